"""Rule cfn_table8: CFN Table 8, the Softplus-trained models attacked and defended."""
import _lib  # noqa: F401  (puts the repository's lib/ first on sys.path)

from xaisec.papers.cfn.report import write_table8
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk, uses_device=False):
    write_table8(list(smk.input), smk.params.models, smk.output.csv, smk.output.md)
