"""Localization scores of explanations against ground-truth masks (FGSM-XAI paper).

The FGSM-XAI paper scores an explanation against a binary ground-truth mask:

* Grad-CAM and SmoothGrad maps are binarised at their 85th percentile (top 15%
  of pixels, :func:`binarize_top`); LIME already yields a binary mask.
* IoU = |A ∩ B| / |A ∪ B| of the binary explanation with the binary mask
  (the authors' code computed the union wrongly; the correct formula is used).
* RMSE = sqrt(mean((a - b)^2)) of the explanation map min-max scaled to [0, 1]
  against the mask as 0/1 floats.

Everything is vectorised over the batch axis N; no per-sample Python loops.
Torch tensors are accepted wherever arrays are (``.detach().cpu().numpy()``).
"""
from __future__ import annotations

import numpy as np

__all__ = ["aggregate", "minmax", "binarize_top", "iou", "rmse", "score"]


def _np(x) -> np.ndarray:
    """Array from a numpy array, array-like or torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def aggregate(maps) -> np.ndarray:
    """Reduce explanation maps to one channel: (N,C,H,W) or (N,H,W) -> (N,H,W).

    Multi-channel maps (e.g. SmoothGrad on RGB) are reduced by the maximum over
    channels of the absolute values. (N,H,W) input is returned unchanged
    (as an array, no abs taken).
    """
    m = _np(maps)
    if m.ndim == 3:
        return m
    if m.ndim == 4:
        return np.abs(m).max(axis=1)
    raise ValueError(f"maps must be (N,C,H,W) or (N,H,W), got shape {m.shape}")


def minmax(maps) -> np.ndarray:
    """Scale each map of (N,H,W) to [0, 1] independently; constant maps -> all 0."""
    m = _np(maps).astype(np.float64)
    flat = m.reshape(m.shape[0], int(np.prod(m.shape[1:])))     # also for N = 0
    lo = flat.min(axis=1, keepdims=True)
    rng = flat.max(axis=1, keepdims=True) - lo
    safe = np.where(rng > 0, rng, 1.0)
    out = np.where(rng > 0, (flat - lo) / safe, 0.0)
    return out.reshape(m.shape)


def binarize_top(maps, fraction: float = 0.15) -> np.ndarray:
    """Boolean mask of the top ``fraction`` of pixels of each (N,H,W) map.

    The threshold is the map's ``1 - fraction`` quantile (85th percentile for
    0.15), from ``np.quantile(..., method="linear")`` over the flattened H*W
    pixels. Pixels ``>=`` the threshold are True, so ties at the threshold are
    all included: a map may keep more than ``fraction`` of its pixels, and a
    constant map is all True. On a map of distinct values the count kept is
    ``H*W - floor((1 - fraction) * (H*W - 1)) - 1`` when the quantile falls
    between pixels (e.g. 100 pixels, 0.15 -> 15).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    m = _np(maps)
    if m.ndim != 3:
        raise ValueError(f"maps must be (N,H,W), got shape {m.shape}")
    flat = m.reshape(m.shape[0], -1).astype(np.float64)
    thr = np.quantile(flat, 1.0 - fraction, axis=1, method="linear", keepdims=True)
    return (flat >= thr).reshape(m.shape)


def iou(a, b) -> np.ndarray:
    """Per-sample IoU |a ∩ b| / |a ∪ b| of boolean (N,H,W) masks -> (N,) float.

    When both masks are empty the union is 0 and the IoU is defined as nan.
    """
    a, b = _np(a).astype(bool), _np(b).astype(bool)
    _check_same(a, b)
    axes = tuple(range(1, a.ndim))
    inter = np.logical_and(a, b).sum(axis=axes).astype(np.float64)
    union = np.logical_or(a, b).sum(axis=axes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), np.nan)


def rmse(a, b) -> np.ndarray:
    """Per-sample sqrt(mean((a - b)^2)) of float (N,H,W) maps in [0, 1] -> (N,)."""
    a, b = _np(a).astype(np.float64), _np(b).astype(np.float64)
    _check_same(a, b)
    axes = tuple(range(1, a.ndim))
    return np.sqrt(((a - b) ** 2).mean(axis=axes))


def _check_same(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: explanation {a.shape} vs mask {b.shape}")


def score(maps, masks, fraction: float = 0.15, binary: bool = False) -> dict:
    """Per-sample localization scores {"iou": (N,), "rmse": (N,)}.

    ``maps``: (N,C,H,W) or (N,H,W) explanations (aggregated with
    :func:`aggregate`). ``masks``: (N,H,W) ground truth, bool or 0/1 integers.
    With ``binary=False`` (Grad-CAM, SmoothGrad) the map is binarised with
    :func:`binarize_top` for IoU and min-max scaled for RMSE. With
    ``binary=True`` (LIME) the maps are already binary masks: nonzero = True,
    used as-is for IoU and as 0/1 floats for RMSE. A shape mismatch raises
    ValueError naming both shapes.
    """
    m = aggregate(maps)
    gt = _np(masks)
    _check_same(m, gt)
    if gt.dtype != bool:
        if not np.isin(gt, (0, 1)).all():
            raise ValueError("masks must be boolean or contain only 0 and 1")
        gt = gt != 0
    if binary:
        expl_bin = m != 0
        expl_float = expl_bin.astype(np.float64)
    else:
        expl_bin = binarize_top(m, fraction)
        expl_float = minmax(m)
    return {"iou": iou(expl_bin, gt), "rmse": rmse(expl_float, gt.astype(np.float64))}
