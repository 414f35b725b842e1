"""Array and tensor helpers every family uses: uint8 NHWC arrays to NCHW tensors, [0, 1]
floats, batched prediction, random subsets."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm


def to_float(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW -> float32 in [0, 1] (on x's device)."""
    return x_uint8.float().div_(255.0)


def nhwc_to_tensor(x: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) array -> uint8 (N, C, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500, device=None,
            progress: bool = False) -> torch.Tensor:
    """Logits for uint8 or float images (N, C, H, W), batched; returned on the CPU."""
    device = device or next(model.parameters()).device
    out = []
    for i in tqdm(range(0, len(x), batch_size), disable=not progress, desc="predict", leave=False):
        xb = x[i:i + batch_size].to(device, non_blocking=True)
        xb = to_float(xb) if xb.dtype == torch.uint8 else xb
        out.append(model(xb).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def random_subset(x: np.ndarray, y: np.ndarray, n: int | None, rng: np.random.Generator):
    """``n`` random images (kept in file order) of (x, y); all of them if ``n`` is None or
    larger. Subsets must be random: the archives list their images class by class."""
    if not n or n >= len(x):
        return x, y
    idx = np.sort(rng.choice(len(x), n, replace=False))
    return x[idx], y[idx]
