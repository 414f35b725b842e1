"""Rule cfn_table: the CFN paper's Table N (1-4) from the per-sample evaluations."""
import _lib  # noqa: F401  (makes lib/ importable without an install)

from xaisec.papers.cfn.report import write_cfn_table
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk, uses_device=False):
    write_cfn_table(list(smk.input), smk.params.spec, smk.output.csv, smk.output.md)
