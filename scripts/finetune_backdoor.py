"""Rules finetune_backdoor and finetune_scenario: one explanation-aware backdoor (attack x
explainer x loss x seed), for finetune_scenario under one of the CFN paper's attacker scenarios
(the ``scenario`` wildcard: c3 core weights only, c5 CFN in place of BatchNorm)."""
import _lib  # noqa: F401  (makes lib/ importable without an install)
from pathlib import Path

from xaisec.workflow.context import rule_context
from xaisec.papers.cfn.tasks import finetune_backdoor

smk = snakemake  # noqa: F821
with rule_context(smk) as ctx:
    w = smk.wildcards
    finetune_backdoor(smk.input.clean_model, Path(smk.input.manifest).parent,
                      Path(smk.output.model).parent, w.attack, w.explainer, w.loss,
                      smk.params.finetune, smk.params.hyper, int(w.seed), ctx.device,
                      provenance=ctx.provenance(rule=smk.rule), xai=smk.params.xai,
                      meta={"model": w.model, "attack": w.attack, "explainer": w.explainer,
                            "loss": w.loss},
                      scenario=w.get("scenario"))
