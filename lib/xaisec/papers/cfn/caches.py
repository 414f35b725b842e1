"""Explain a model on the evaluation set and cache the maps (one Parquet file per variant).

The evaluation set is drawn at random (seeded) from the test split and shuffled; batches are
all clean or all triggered (``separate``, the CFN authors' evaluation) or half and half
(``mixed``). Batch-statistics defenses see exactly these batches.
"""
from __future__ import annotations

import numpy as np
import torch

from xaisec.attacks.trigger import apply_trigger
from xaisec.cache import ExplanationSet
from xaisec.defenses import apply_model_defense
from xaisec.evaluate import drop_last_partial, eval_indices
from xaisec.explainers import iter_explanations, make_explainer
from xaisec.tensors import nhwc_to_tensor, to_float

VARIANTS = ("clean", "triggered")


def batch_plan(n: int, batch_size: int, composition: str):
    """(image positions, triggered flags) of each batch over n images x {clean, triggered}."""
    if composition == "separate":
        return [(np.arange(i, min(i + batch_size, n)), np.full(min(batch_size, n - i), trig))
                for trig in (False, True) for i in range(0, n, batch_size)]
    if composition == "mixed":
        half = batch_size // 2
        if half < 1:
            raise ValueError("mixed batch composition needs a batch size of at least 2")
        plan = []
        for i in range(0, n, half):
            idx = np.arange(i, min(i + half, n))
            plan.append((np.concatenate([idx, idx]),
                         np.repeat([False, True], len(idx))))
        return plan
    raise ValueError(f"unknown batch composition {composition!r}; known: separate, mixed")


def explain_dataset(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, explainer: str,
                    defense: str = "none", batch_size: int = 100, n_samples: int | None = None,
                    seed: int = 0, composition: str = "separate", trigger: dict | None = None,
                    device="cpu", meta: dict | None = None, progress: bool = True,
                    explainer_kwargs: dict | None = None) -> dict[str, ExplanationSet]:
    """Explanations of ``model`` under ``defense`` on clean and triggered evaluation images.

    ``x`` uint8 (N, H, W, 3) test images, ``y`` labels. Returns {"clean": ..., "triggered":
    ...} ExplanationSets with the same samples in the same order; the explained class is the
    model's prediction on that input.
    """
    device = torch.device(device)
    idx = drop_last_partial(eval_indices(len(x), n_samples, seed), batch_size)
    xt = nhwc_to_tensor(x[idx])
    n = len(idx)
    m = apply_model_defense(model, defense).to(device).eval()
    expl = make_explainer(explainer, m, **(explainer_kwargs or {}))
    maps = {}
    pred = {v: np.zeros(n, np.int64) for v in VARIANTS}
    conf = {v: np.zeros(n, np.float32) for v in VARIANTS}
    plan = batch_plan(n, batch_size, composition)

    def batches():  # exactly the batches of the plan: batch-statistics defenses see these
        for pos, trig in plan:
            xb = to_float(xt[pos].to(device))
            if trig.any():
                tm = torch.as_tensor(trig, device=device)[:, None, None, None]
                xb = torch.where(tm, apply_trigger(xb, **(trigger or {})), xb)
            yield xb

    results = iter_explanations(expl, batches(), total=len(plan), progress=progress,
                                desc=f"explain {explainer} ({defense})")
    for (pos, trig), res in zip(plan, results):
        mb = res.maps.float().cpu().numpy()
        c, p = res.confidence.cpu().numpy(), res.pred.cpu().numpy()
        for variant, sel in (("clean", ~trig), ("triggered", trig)):
            if not sel.any():
                continue
            if variant not in maps:
                maps[variant] = np.empty((n, *mb.shape[1:]), np.float32)
            maps[variant][pos[sel]] = mb[sel]
            pred[variant][pos[sel]] = p[sel]
            conf[variant][pos[sel]] = c[sel]
    base = {**(meta or {}), "explainer": explainer, "explainer_kwargs": explainer_kwargs or {},
            "defense": defense,
            "batch_size": batch_size, "composition": composition, "eval_seed": seed}
    return {v: ExplanationSet(maps=maps[v], sample=idx.astype(np.int64),
                              label=np.asarray(y)[idx].astype(np.int64), pred=pred[v],
                              confidence=conf[v], target=pred[v].copy(),
                              meta={**base, "variant": v})
            for v in VARIANTS}
