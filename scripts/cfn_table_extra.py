"""Rule cfn_table_extra: the CFN paper's Tables 5-8."""
import _lib  # noqa: F401  (makes lib/ importable without an install)

from xaisec import cfn_report
from xaisec.io import read_json
from xaisec.smk import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk, uses_device=False):
    n, out = int(smk.wildcards.n), smk.output
    if n == 5:
        cfn_report.write_table5(list(smk.input.per_sample), out.csv, out.md)
    elif n == 8:
        cfn_report.write_table8(list(smk.input.per_sample), out.csv, out.md)
    elif n == 6:
        cfn_report.write_table6(out.csv, out.md)
    else:  # Table 7: accuracy of the C3/C5 attacks with BN (C3, C5) and CFN (C4, C6)
        records = []  # the scenario as the fine-tuning recorded it (model.json), not the path
        for sp, mp, cp in zip(smk.input.scenario, smk.input.meta, smk.input.clean):
            s, m, c = read_json(sp), read_json(mp), read_json(cp)
            records.append({"scenario": m["scenario"], "attack": m["attack"],
                            "explainer": m["explainer"], "orig_acc": c["accuracy"]["none"],
                            "bn_acc": s["accuracy"]["none"], "cfn_acc": s["accuracy"]["cfn"]})
        cfn_report.write_table7(records, out.csv, out.md)
