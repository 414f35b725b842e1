"""Rule batchsize_ablation: CFN at every evaluation batch size (CFN Figures 8-9)."""
import _lib  # noqa: F401  (makes lib/ importable without an install)
from pathlib import Path

from xaisec.workflow.context import rule_context
from xaisec.papers.cfn.tasks import batchsize_ablation

smk = snakemake  # noqa: F821
with rule_context(smk) as ctx:
    batchsize_ablation(smk.input.original, smk.input.attacked, Path(smk.input.manifest).parent,
                       smk.output[0], smk.params.settings, smk.params.evaluation,
                       smk.params.trigger, smk.params.target_label, smk.params.xai, ctx.device)
