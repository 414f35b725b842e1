"""Rule cfn_src_figure: CFN Figures 5-7 and 12-18, SRC distributions and their p-values."""
import _lib  # noqa: F401  (puts the repository's lib/ first on sys.path)

from xaisec.papers.cfn.report import src_figure
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk, uses_device=False):
    src_figure(list(smk.input), int(smk.wildcards.n), [smk.output.png, smk.output.pdf],
               smk.params.models)
