"""Rule fgsmxai_table: the FGSM-XAI paper's Table 1 (IoU) or Table 2 (RMSE)."""
import _lib  # noqa: F401  (makes lib/ importable without an install)

from xaisec.papers.fgsmxai.experiment import write_iou_rmse_table
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk, uses_device=False):
    n = int(smk.wildcards.n)
    write_iou_rmse_table(smk.params.runs, "iou" if n == 1 else "rmse", n, smk.output.csv,
                         smk.output.md, smk.params.settings)
