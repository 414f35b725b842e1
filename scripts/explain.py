"""Rule explain: cache one model's explanations (one defense) on clean and triggered inputs."""
import _lib  # noqa: F401  (makes lib/ importable without an install)
from pathlib import Path

from xaisec.workflow.context import rule_context
from xaisec.papers.cfn.tasks import explain_to_cache

smk = snakemake  # noqa: F821
with rule_context(smk) as ctx:
    w = smk.wildcards
    explain_to_cache(smk.input.model, Path(smk.input.manifest).parent,
                     {"clean": smk.output.clean, "triggered": smk.output.triggered},
                     w.explainer, w.defense, smk.params.evaluation, smk.params.trigger,
                     ctx.device, xai=smk.params.xai, meta={"dataset": w.dataset, "model": w.model,
                                       "seed": int(w.seed), "source": w.source})
