"""Rule cfn_table5: CFN Table 5, the attacks on ResNet-20 without BN / with frozen BN."""
import _lib  # noqa: F401  (puts the repository's lib/ first on sys.path)

from xaisec.papers.cfn.report import write_table5
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk, uses_device=False):
    write_table5(list(smk.input), smk.params.models, smk.output.csv, smk.output.md)
