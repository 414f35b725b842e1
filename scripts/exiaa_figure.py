"""Rule exiaa_figure: the EXIAA paper's Figures 2-5 and A.1."""
import _lib  # noqa: F401  (makes lib/ importable without an install)

from xaisec.papers.exiaa.experiment import figure
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk, uses_device=False):
    f = smk.wildcards.f
    figure(list(smk.input), f if f == "A1" else int(f), [smk.output.png, smk.output.pdf])
