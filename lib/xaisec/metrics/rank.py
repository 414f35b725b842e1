"""Kendall's tau-b between maps, batched (AdvEdge paper, Sec. VI-B, Table VI: the rank
correlation of the benign and adversarial interpretation maps; docs/settings.md#advedge).

``kendall_tau(a, b)`` takes two batches of maps (N, ...) and returns tau-b per pair (N,):

    tau_b = (C - D) / sqrt((n0 - n1) (n0 - n2))

over the n0 = P (P - 1) / 2 pixel pairs, C - D the sum of sign(a_i - a_j) sign(b_i - b_j), n1
and n2 the pairs tied in a and in b. It equals ``scipy.stats.kendalltau(a_k, b_k)`` (the
default tau-b) per pair, with NaN where one map is constant. All pairs of a map are compared
at once on the maps' device (P^2 signs per map, in chunks of maps that keep about
``max_elements`` of them in memory).
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["kendall_tau"]


def kendall_tau(a, b, max_elements: int = 2 ** 25) -> np.ndarray:
    """Kendall's tau-b of each pair of maps ``a[k]``, ``b[k]`` (arrays or tensors of the same
    shape (N, ...)); float64 (N,)."""
    ta = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a)
    tb = torch.as_tensor(np.asarray(b) if not isinstance(b, torch.Tensor) else b)
    if ta.shape != tb.shape or ta.dim() < 2:
        raise ValueError(f"maps must be two batches (N, ...) of the same shape, got "
                         f"{tuple(ta.shape)} and {tuple(tb.shape)}")
    ta, tb = ta.flatten(1).double(), tb.to(ta.device).flatten(1).double()
    n, p = ta.shape
    out = torch.full((n,), float("nan"), dtype=torch.float64)
    if p < 2:
        return out.numpy()
    n0 = p * (p - 1) / 2
    chunk = max(1, int(max_elements // (p * p)))
    for s in range(0, n, chunk):
        x, y = ta[s:s + chunk], tb[s:s + chunk]
        sx = torch.sign(x[:, :, None] - x[:, None, :])
        sy = torch.sign(y[:, :, None] - y[:, None, :])
        con = (sx * sy).sum((1, 2)) / 2              # each unordered pair appears twice
        tie_x = ((sx == 0).sum((1, 2)).double() - p) / 2       # minus the diagonal
        tie_y = ((sy == 0).sum((1, 2)).double() - p) / 2
        den = torch.sqrt((n0 - tie_x) * (n0 - tie_y))
        out[s:s + chunk] = torch.where(den > 0, con / den.clamp_min(1e-300),
                                       torch.full_like(den, float("nan"))).cpu()
    return out.numpy()
