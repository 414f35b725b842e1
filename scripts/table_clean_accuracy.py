"""Rule table_clean_accuracy: results/tables/clean_accuracy.{csv,md}."""
import _lib  # noqa: F401  (makes lib/ importable without an install)
from xaisec.report import write_clean_accuracy
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk, uses_device=False):
    write_clean_accuracy(list(smk.input), smk.output.csv, smk.output.md)
