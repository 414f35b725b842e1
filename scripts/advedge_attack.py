"""Rules advedge_attack and advedge_defended_attack: one attack (framework x interpreter x
variant, or the PGD reference), on the model or on a defended system (Table XI, white-box)."""
import _lib  # noqa: F401  (makes lib/ importable without an install)
from pathlib import Path

from xaisec.io import write_json
from xaisec.papers.advedge.experiment import run_attack
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk) as ctx:
    w = smk.wildcards
    record = run_attack(smk.input.model, Path(smk.input.manifest).parent, smk.input.inputs,
                        w.advfw, w.advint, w.advvar, smk.output.adv, smk.params.settings,
                        ctx.device, rts_path=smk.input.get("rts"),
                        meta={"dataset": w.dataset, "model": w.model, "seed": int(w.seed)},
                        input_defense=(w.advdef if smk.rule == "advedge_defended_attack"
                                       and w.advdef != "adversarial" else None))
    write_json(smk.output.record, {**record, "provenance": ctx.provenance(rule=smk.rule)})
    print({k: record[k] for k in ("n", "asr", "seconds_per_input", "linf_max")})
