"""Benign-vs-adversarial similarity metrics of the AdvEdge paper (Section V-A, "Evaluation
Metrics"; docs/settings.md#advedge, "metrics"), per sample, on numpy arrays or tensors.

* :func:`l1_distance`: mean absolute difference of two maps scaled to [0, 1] (the paper's L1
  "standardized in the range of [0, 1]"; a per-pixel mean, so maps of any size compare);
* :func:`topk_iou`: IoU of the top-``fraction`` pixels of each map (the paper binarises the
  real-valued maps; the fraction is a config key, recorded in every result);
* :func:`noise_rate`: 1 - SSIM between the benign and adversarial images (scikit-image's
  ``structural_similarity``, data range 1, channels last);
* :func:`kendall_tau_rows` lives with the other rank statistics in
  :mod:`xaisec.metrics.correlation`.
"""
from __future__ import annotations

import numpy as np

from xaisec.metrics.localization import binarize_top, iou
from xaisec.metrics.localization import minmax as scale01

__all__ = ["l1_distance", "noise_rate", "topk_iou"]


def _np(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def l1_distance(a, b) -> np.ndarray:
    """Mean |a - b| per sample of two (N, ...) map stacks, each scaled to [0, 1] first."""
    a, b = scale01(a), scale01(b)
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {a.shape} vs {b.shape}")
    return np.abs(a - b).reshape(len(a), int(np.prod(a.shape[1:]))).mean(1)   # also N = 0


def topk_iou(a, b, fraction: float) -> np.ndarray:
    """IoU (N,) of the top-``fraction`` pixels of each map (channels aggregated by max)."""
    a, b = _np(a), _np(b)
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {a.shape} vs {b.shape}")
    if a.ndim == 4:
        a, b = a.max(1), b.max(1)
    return iou(binarize_top(a, fraction), binarize_top(b, fraction))


def noise_rate(x, adv) -> np.ndarray:
    """1 - SSIM (N,) between benign and adversarial images (N, C, H, W) in [0, 1]."""
    from skimage.metrics import structural_similarity

    x, adv = _np(x), _np(adv)
    if x.shape != adv.shape or x.ndim != 4:
        raise ValueError(f"images must be two (N, C, H, W) stacks, got {x.shape}, {adv.shape}")
    win = min(7, x.shape[-1], x.shape[-2])
    win -= 1 - win % 2  # odd
    return np.array([1.0 - structural_similarity(a.transpose(1, 2, 0), b.transpose(1, 2, 0),
                                                 data_range=1.0, channel_axis=2, win_size=win)
                     for a, b in zip(x, adv)])
