"""Rules advedge_defense_scores (Table XI), advedge_detector_maps and advedge_detector_scores
(Tables IV, V), advedge_robust_scores (Table VI) and advedge_blackbox (Table III stand-in)."""
import _lib  # noqa: F401  (makes lib/ importable without an install)
from pathlib import Path

from xaisec.papers.advedge import defenses
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk) as ctx:
    w = smk.wildcards
    data_dir = Path(smk.input.manifest).parent
    files = {k: v for k, v in smk.input.items() if k not in ("manifest", "train", "test")}
    meta = {"dataset": w.dataset, "seed": int(w.seed)}
    if "model" in w.keys():
        meta["model"] = w.model
    out, settings = smk.output[0], smk.params.settings
    if smk.rule == "advedge_defense_scores":
        df = defenses.score_defenses(files, data_dir, out, settings, meta, ctx.device)
    elif smk.rule == "advedge_detector_maps":
        adv = {k[len("adv_"):]: v for k, v in files.items() if k.startswith("adv_")}
        df = defenses.detector_maps(smk.input.model, data_dir, smk.input.inputs, adv, out,
                                    settings, ctx.device, rts_path=smk.input.get("rts"),
                                    meta=meta)
    elif smk.rule == "advedge_detector_scores":
        df = defenses.score_detector(files, out, settings, meta)
    elif smk.rule == "advedge_robust_scores":
        df = defenses.score_robustness(files, data_dir, out, settings, meta, ctx.device)
    else:
        df = defenses.score_blackbox(files, data_dir, out, settings, meta, ctx.device)
    print(df if not hasattr(df, "shape") else f"{len(df)} rows")
