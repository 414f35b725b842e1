"""Rule cfn_table6: CFN Table 6, the attack scenarios C1-C6 (no inputs)."""
import _lib  # noqa: F401  (puts the repository's lib/ first on sys.path)

from xaisec.papers.cfn.report import write_table6
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk, uses_device=False):
    write_table6(smk.output.csv, smk.output.md)
