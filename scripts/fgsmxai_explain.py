"""Rule fgsmxai_explain: one input variant explained with one method, cached to Parquet."""
import _lib  # noqa: F401  (makes lib/ importable without an install)
from pathlib import Path

from xaisec.papers.fgsmxai.experiment import explain_inputs
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk) as ctx:
    w = smk.wildcards
    explain_inputs(smk.input.model, Path(smk.input.manifest).parent, smk.input.inputs,
                   w.variant, w.fxm, smk.output[0], smk.params.settings, ctx.device,
                   meta={"dataset": w.dataset, "model": w.model, "seed": int(w.seed)})
