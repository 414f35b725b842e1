"""Rule exiaa_grid: EXIAA and its noise baseline over the alpha x top-k grid for one model,
explainer and attack-image selection."""
import _lib  # noqa: F401  (makes lib/ importable without an install)
from pathlib import Path

from xaisec.papers.exiaa.experiment import run
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk) as ctx:
    w = smk.wildcards
    summary = run(smk.input.model, Path(smk.input.manifest).parent, smk.output[0], w.exm,
                  w.selection, smk.params.settings, ctx.device,
                  meta={"dataset": w.dataset, "model": w.model, "seed": int(w.seed)})
    print(summary)
