"""Rule advedge_inputs: correctly classified test images and their attack targets."""
import _lib  # noqa: F401  (makes lib/ importable without an install)
from pathlib import Path

from xaisec.io import write_json
from xaisec.papers.advedge.experiment import make_inputs
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk) as ctx:
    w = smk.wildcards
    record = make_inputs(smk.input.model, Path(smk.input.manifest).parent, smk.output.inputs,
                         smk.params.settings, ctx.device,
                         meta={"dataset": w.dataset, "model": w.model, "seed": int(w.seed)})
    write_json(smk.output.record, {**record, "provenance": ctx.provenance(rule=smk.rule)})
    print(record)
