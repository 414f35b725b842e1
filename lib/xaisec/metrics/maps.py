"""Explanation maps (N, C, H, W) compared: the normalisations the CFN attacks train with
(z-score, channel maximum) and the CFN evaluation reports with (divided by the maximum),
per-image min-max scaling, and per-sample MSE and DSSIM (docs/settings.md#cfn)."""
from __future__ import annotations

import torch
from torch import Tensor

LOSSES = ("mse", "dssim")


def _check_maps(maps: Tensor) -> None:
    if not isinstance(maps, Tensor) or maps.dim() != 4:
        raise ValueError("maps must be a tensor of shape (N, C, H, W)")


def normalize_zscore_channelmax(maps: Tensor, eps: float = 1e-5, unbiased: bool = True) -> Tensor:
    """CFN training-loss normalisation (docs/settings.md, CFN, "explanation normalisation"): per
    sample and channel, ``(m - mean_hw) / sqrt(var_hw + eps)``, then the maximum over
    channels. (N, C, H, W) -> (N, 1, H, W). The variance is the unbiased one (``torch.var``'s
    default, as the authors' code computes it); ``unbiased=False`` gives the biased one.
    Differentiable (max passes the gradient to the arg-max channel)."""
    _check_maps(maps)
    mean = maps.mean(dim=(2, 3), keepdim=True)
    var = maps.var(dim=(2, 3), keepdim=True, unbiased=unbiased)
    z = (maps - mean) / torch.sqrt(var + eps)
    return z.amax(dim=1, keepdim=True)


def normalize_max(maps: Tensor) -> Tensor:
    """CFN reporting normalisation (docs/settings.md, CFN, "reported explanation error"): maximum
    over channels, then each map divided by its own maximum. A map whose maximum is <= 0 is
    returned unscaled. (N, C, H, W) -> (N, 1, H, W)."""
    _check_maps(maps)
    m = maps.amax(dim=1, keepdim=True)
    top = m.amax(dim=(2, 3), keepdim=True)
    return m / torch.where(top > 0, top, torch.ones_like(top))


def minmax(maps: Tensor) -> Tensor:
    """Per-image min-max scaling over all of (C, H, W) to [0, 1]; a constant map becomes 0.
    Shape kept."""
    _check_maps(maps)
    flat = maps.flatten(1)
    lo = flat.amin(1).view(-1, 1, 1, 1)
    hi = flat.amax(1).view(-1, 1, 1, 1)
    rng = hi - lo
    return (maps - lo) / torch.where(rng > 0, rng, torch.ones_like(rng))



def zscore_channelmax(maps: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per sample and channel z-score over HxW (variance + eps, torch.var's unbiased estimate
    as in the attack authors' code), then max over channels: the training loss's
    normalisation."""
    return normalize_zscore_channelmax(maps, eps=eps, unbiased=True)


max_normalize = normalize_max


def mse_per_sample(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a - b) ** 2).flatten(1).mean(1)


def dssim_per_sample(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(1 - SSIM) / 2 of min-max scaled maps, data_range 1 (pytorch-msssim, 11x11 window)."""
    from pytorch_msssim import ssim

    return (1 - ssim(minmax(a), minmax(b), data_range=1.0, size_average=False)) / 2


def explanation_loss(kind: str):
    if kind == "mse":
        return mse_per_sample
    if kind == "dssim":
        return dssim_per_sample
    raise ValueError(f"unknown explanation loss {kind!r}; known: {', '.join(LOSSES)}")
