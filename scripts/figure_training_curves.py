"""Rule figure_training_curves: results/figures/training_curves.{png,pdf}."""
import _lib  # noqa: F401  (makes lib/ importable without an install)
from xaisec.report import training_curves_figure
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk, uses_device=False):
    training_curves_figure(list(smk.input), smk.params.labels, [smk.output.png, smk.output.pdf])
