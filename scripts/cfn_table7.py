"""Rule cfn_table7: CFN Table 7, accuracy of the C3/C5 attacks with BN (C3, C5) and CFN (C4, C6)."""
import _lib  # noqa: F401  (puts the repository's lib/ first on sys.path)

from xaisec.papers.cfn.report import write_table7_from_files
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk, uses_device=False):
    write_table7_from_files(smk.input.scenario, smk.input.meta, smk.input.clean, smk.output.csv,
                            smk.output.md)
