"""Rule advedge_table: AdvEdge Table I, II, VII, VIII or the comparison table."""
import _lib  # noqa: F401  (makes lib/ importable without an install)

from xaisec.papers.advedge import report
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk, uses_device=False):
    df = report.load_scores(list(smk.input), smk.params.runs)
    name = smk.wildcards.name
    out = (smk.output.csv, smk.output.md)
    if name == "table2":
        report.write_transfer_table(df, *out)
    elif name == "table1":
        report.write_time_table(df, *out)
    elif name in ("table7", "table8"):
        report.write_rate_table(df, "asr" if name == "table7" else "mc", *out)
    else:
        report.write_comparison(df, *out)
