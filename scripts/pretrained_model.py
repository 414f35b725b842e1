"""Rule pretrained_model: a pretrained ImageNet network written as this project's checkpoint."""
import _lib  # noqa: F401  (makes lib/ importable without an install)
from pathlib import Path

from xaisec.workflow.context import rule_context
from xaisec.workflow.tasks import pretrained_model

smk = snakemake  # noqa: F821
with rule_context(smk, uses_device=False) as ctx:
    w = smk.wildcards
    cfg = smk.params.model
    info = pretrained_model(cfg["arch"], cfg.get("weights") or "DEFAULT",
                            Path(smk.output.model).parent,
                            provenance=ctx.provenance(rule="pretrained_model"),
                            meta={"dataset": w.dataset, "model": w.model})
    print(info)
