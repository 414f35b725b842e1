"""Rule advedge_table: AdvEdge Table I, II, III (stand-in), IV, V, VI, VII, VIII, XI or the
comparison table."""
import _lib  # noqa: F401  (makes lib/ importable without an install)

from xaisec.papers.advedge import defense_report, report
from xaisec.papers.advedge.defense_targets import DEFENSE_TABLES
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk, uses_device=False):
    name = smk.wildcards.name
    out = (smk.output.csv, smk.output.md)
    if name in DEFENSE_TABLES:  # part 3: their own score files
        df = report.load_scores(list(smk.input))
        if name == "table11":
            defense_report.write_defense_table(df, *out, smk.params.runs)
        elif name in ("table4", "table5"):
            defense_report.write_detector_table(df, name, *out)
        elif name == "table6":
            defense_report.write_robust_table(df, *out)
        else:
            defense_report.write_blackbox_table(df, *out)
    else:
        df = report.load_scores(list(smk.input), smk.params.runs)
        if name == "table2":
            report.write_transfer_table(df, *out)
        elif name == "table1":
            report.write_time_table(df, *out)
        elif name in ("table7", "table8"):
            report.write_rate_table(df, "asr" if name == "table7" else "mc", *out)
        else:
            report.write_comparison(df, *out)
