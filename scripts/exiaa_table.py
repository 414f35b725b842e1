"""Rule exiaa_table: the EXIAA paper's Table 1 or Table B.1-B.3."""
import _lib  # noqa: F401  (makes lib/ importable without an install)

from xaisec.papers.exiaa.experiment import write_table
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk, uses_device=False):
    write_table(list(smk.input), smk.wildcards.t, smk.output.csv, smk.output.md)
