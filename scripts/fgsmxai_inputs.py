"""Rule fgsmxai_inputs: the evaluation images and their FGSM and BIM versions."""
import _lib  # noqa: F401  (makes lib/ importable without an install)
from pathlib import Path

from xaisec.papers.fgsmxai.experiment import make_inputs
from xaisec.io import write_json
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk) as ctx:
    w = smk.wildcards
    record = make_inputs(smk.input.model, Path(smk.input.manifest).parent, smk.output.inputs,
                         smk.params.settings, ctx.device,
                         meta={"dataset": w.dataset, "model": w.model, "seed": int(w.seed)})
    write_json(smk.output.accuracy, {**record, "provenance": ctx.provenance(rule=smk.rule)})
    print(f"accuracy: {record['accuracy']}")
