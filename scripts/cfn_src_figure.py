"""Rule cfn_src_figure: CFN Figure 5 (SF, RH) or 6 (FD), SRC distributions."""
import _lib  # noqa: F401  (makes lib/ importable without an install)

from xaisec.report import cfn_src_figure
from xaisec.smk import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk, uses_device=False):
    cfn_src_figure(list(smk.input), int(smk.wildcards.n), [smk.output.png, smk.output.pdf])
