"""Rule cfn_comparison: every reproduced cell of CFN Tables 1-4 next to the published value."""
import _lib  # noqa: F401  (makes lib/ importable without an install)

from xaisec.papers.cfn.report import write_cfn_comparison
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk, uses_device=False):
    write_cfn_comparison(list(smk.input), smk.params.tables, smk.output.csv, smk.output.md)
