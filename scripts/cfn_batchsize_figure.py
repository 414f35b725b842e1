"""Rule cfn_batchsize_figure: CFN Figure 8 (ASR, explanation error) or 9 (accuracy) against
the evaluation batch size, from the batch-size ablation's CSV."""
import _lib  # noqa: F401  (puts the repository's lib/ first on sys.path)

from xaisec.papers.cfn.report import batchsize_figure
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk, uses_device=False):
    batchsize_figure(smk.input.csv, int(smk.wildcards.n), [smk.output.png, smk.output.pdf])
