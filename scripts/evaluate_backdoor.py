"""Rule evaluate_backdoor: compare an attacked model's cached explanations with the original's."""
import _lib  # noqa: F401  (makes lib/ importable without an install)

from xaisec.workflow.context import rule_context
from xaisec.papers.cfn.tasks import evaluate_backdoor

smk = snakemake  # noqa: F821
with rule_context(smk, uses_device=False):
    w = smk.wildcards
    inp = dict(smk.input.items())
    original = {v: inp[f"original_{v}"] for v in ("clean", "triggered")}
    attacked = {d: {v: inp[f"{d}_{v}"] for v in ("clean", "triggered")}
                for d in smk.params.evaluation["defenses"]}
    evaluate_backdoor(original, attacked, smk.output.summary, smk.output.samples, w.attack,
                      w.loss, smk.params.target_label, smk.params.evaluation,
                      meta={"dataset": w.dataset, "model": w.model, "seed": int(w.seed),
                            "attack": w.attack, "explainer": w.explainer, "loss": w.loss})
