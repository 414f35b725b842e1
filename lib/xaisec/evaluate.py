"""Evaluation of trained models under each defense, with a fixed batch size and composition.

Batch-statistics defenses (``cfn``, ``batchstat``) make every prediction depend on the other
images in its batch. The evaluation set is therefore drawn at random (seeded) from the test
split and shuffled before batching: the archives list images class by class, and a one-class
batch would normalise away the class signal (docs/settings.md, CPU-scale probe).
"""
from __future__ import annotations

import numpy as np
import torch

from xaisec.defenses import apply_model_defense
from xaisec.tensors import nhwc_to_tensor, predict


def eval_indices(n_total: int, n: int | None, seed: int) -> np.ndarray:
    """``n`` distinct indices of ``range(n_total)`` in random order (all of them if ``n`` is None)."""
    rng = np.random.default_rng(seed)
    if n is None or n >= n_total:
        return rng.permutation(n_total)
    return rng.choice(n_total, size=n, replace=False)


def drop_last_partial(idx: np.ndarray, batch_size: int) -> np.ndarray:
    """Keep whole batches only, so every batch-statistics evaluation sees ``batch_size`` images."""
    keep = (len(idx) // batch_size) * batch_size
    if keep == 0:
        raise ValueError(f"evaluation set of {len(idx)} images is smaller than one batch "
                         f"of {batch_size}")
    return idx[:keep]


def accuracy_under_defenses(model: torch.nn.Module, x: np.ndarray, y: np.ndarray,
                            defenses=("none", "cfn", "batchstat"), batch_size: int = 100,
                            n_samples: int | None = None, seed: int = 0,
                            device="cpu") -> dict:
    """Clean accuracy of ``model`` with its own BatchNorm (``none``) and each defense.

    ``x`` uint8 (N, H, W, 3), ``y`` labels. Every defense sees the same images in the same
    batches.
    """
    idx = drop_last_partial(eval_indices(len(x), n_samples, seed), batch_size)
    xt = nhwc_to_tensor(x[idx])
    yt = torch.as_tensor(y[idx], dtype=torch.long)
    acc = {}
    for d in defenses:
        m = apply_model_defense(model, d).to(device).eval()
        pred = predict(m, xt, batch_size, device).argmax(1)
        acc[d] = (pred == yt).float().mean().item()
    return {"n_samples": int(len(idx)), "batch_size": batch_size, "eval_seed": seed,
            "accuracy": acc}
