"""Rule cfn_figure_extra: the CFN paper's Figures 1-4 and 7-24."""
import _lib  # noqa: F401  (makes lib/ importable without an install)
import tempfile
from pathlib import Path

from xaisec import cfn_report
from xaisec.smk import rule_context
from xaisec.tasks import example_figure

smk = snakemake  # noqa: F821
with rule_context(smk) as ctx:
    n, spec, paths = int(smk.wildcards.n), smk.params.spec, [smk.output.png, smk.output.pdf]
    if spec["kind"] == "src":
        cfn_report.src_figure(list(smk.input.per_sample), n, paths)
    elif spec["kind"] == "weights":
        cfn_report.weight_figure(spec["pairs"], n, paths)
    elif spec["kind"] == "batchsize":
        with tempfile.TemporaryDirectory() as tmp:
            other = [str(Path(tmp) / "other.png")]
            cfn_report.batchsize_figures(smk.input.csv, paths if n == 8 else other,
                                         paths if n == 9 else other)
    else:
        attacked = {a: smk.input[a] for a in spec["attacks"]}
        example_figure(n, spec, Path(smk.input.manifest).parent, smk.input.original, attacked,
                       smk.params.examples, smk.params.trigger, smk.params.xai, paths, ctx.device)
