"""Rules advedge_scores and advedge_transfer_scores: per-sample metrics of every attack of one
run, and Table II's transfer rows."""
import _lib  # noqa: F401  (makes lib/ importable without an install)
from pathlib import Path

from xaisec.papers.advedge.experiment import score_run, score_transfer
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk, uses_device=False):
    w = smk.wildcards
    files = {k: v for k, v in smk.input.items() if k not in ("manifest",)}
    score = score_transfer if smk.rule == "advedge_transfer_scores" else score_run
    df = score(files, Path(smk.input.manifest).parent, smk.output[0], smk.params.settings,
               {"dataset": w.dataset, "model": w.model, "seed": int(w.seed)})
    print(f"{len(df)} rows")
