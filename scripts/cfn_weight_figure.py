"""Rule cfn_weight_figure: CFN Figures 3, 10 and 11, layer-wise weight similarity."""
import _lib  # noqa: F401  (puts the repository's lib/ first on sys.path)

from xaisec.papers.cfn.report import weight_figure
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk, uses_device=False):
    weight_figure(smk.params.pairs, int(smk.wildcards.n), [smk.output.png, smk.output.pdf])
