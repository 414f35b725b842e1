"""Rule train_clean: train one clean model (dataset x model x seed)."""
import _lib  # noqa: F401  (makes lib/ importable without an install)
from pathlib import Path

from xaisec.workflow.context import rule_context
from xaisec.workflow.tasks import train_clean

smk = snakemake  # noqa: F821
with rule_context(smk) as ctx:
    w = smk.wildcards
    train_clean(Path(smk.input.manifest).parent, Path(smk.output.model).parent,
                smk.params.model, smk.params.train, int(w.seed), ctx.device,
                provenance=ctx.provenance(rule="train_clean"),
                meta={"model": w.model}, init_path=smk.input.get("init"))
