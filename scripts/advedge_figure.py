"""Rules advedge_box_figure, advedge_example_figure and advedge_run_figure: AdvEdge Figures
1-7 and 9-15."""
import _lib  # noqa: F401  (makes lib/ importable without an install)

from xaisec.papers.advedge import report
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk, uses_device=False):
    n = smk.wildcards.n
    if smk.rule == "advedge_box_figure":
        report.box_figure(report.load_scores(list(smk.input), smk.params.runs), n,
                          [smk.output.png, smk.output.pdf])
    elif smk.rule == "advedge_run_figure":
        figure = report.transfer_figure if n == "6" else report.outlier_figure
        figure(smk.params.run, smk.params.settings, [smk.output.png, smk.output.pdf])
    else:
        report.example_figure(n, smk.params.run, smk.params.settings["examples"]["n_images"],
                              [smk.output.png, smk.output.pdf])
