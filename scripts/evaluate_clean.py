"""Rule evaluate_clean: clean accuracy of one model, own BatchNorm and each defense."""
import _lib  # noqa: F401  (makes lib/ importable without an install)
from pathlib import Path

from xaisec.workflow.context import rule_context
from xaisec.workflow.tasks import evaluate_clean

smk = snakemake  # noqa: F821
with rule_context(smk) as ctx:
    w = smk.wildcards
    evaluate_clean(smk.input.model, Path(smk.input.manifest).parent, smk.output[0],
                   smk.params.evaluation, ctx.device,
                   meta={"dataset": w.dataset, "model": w.model, "seed": int(w.seed),
                         "provenance": ctx.provenance(rule="evaluate_clean")})
