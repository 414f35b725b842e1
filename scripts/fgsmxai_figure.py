"""Rule fgsmxai_figure: the FGSM-XAI paper's example Figures 5-9."""
import _lib  # noqa: F401  (makes lib/ importable without an install)

from xaisec.papers.fgsmxai.experiment import example_figure
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk, uses_device=False):
    example_figure(int(smk.wildcards.n), smk.params.runs, smk.params.settings,
                   [smk.output.png, smk.output.pdf])
