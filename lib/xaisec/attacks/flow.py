"""Spatial flow fields of StAdv (Xiao et al. 2018; AdvEdge paper, Section III, eqs. 3-4;
docs/settings.md#advedge, "StAdv").

A flow ``r`` is an (N, 2, H, W) tensor in pixels: channel 0 is the horizontal displacement
du (along the width), channel 1 the vertical dv (along the height). The adversarial pixel i
samples the benign image at its own position plus r_i (eq. 3):

    x_adv[i] = sum over the four pixels q around (u_i + du_i, v_i + dv_i) of
               x[q] (1 - |u_i + du_i - u_q|) (1 - |v_i + dv_i - v_q|)

with positions clamped to the image (the border pixel repeats). :func:`flow_warp` computes
this with integer pixel coordinates, so a zero flow returns the input bit for bit; it equals
``F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)`` with
``grid`` the displaced pixel centres normalised to [-1, 1] (:func:`flow_grid`).

:func:`flow_loss` is the smoothness term l_flow (eq. 4): per sample, over every pixel p and
each neighbour q, ``sqrt((du_p - du_q)^2 + (dv_p - dv_q)^2 + eps)``. ``neighbours="paper"``
takes the 4-neighbourhood inside the image (StAdv's definition; each pair counted from both
ends); ``"code"`` the authors' notebooks: the four diagonal neighbours on a replicate-padded
field, so a border pixel is its own neighbour outside the image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["NEIGHBOURS", "flow_grid", "flow_loss", "flow_warp"]

#: neighbour offsets (dy, dx) of each flow-loss setting
NEIGHBOURS = {"paper": ((-1, 0), (1, 0), (0, -1), (0, 1)),
              "code": ((-1, -1), (-1, 1), (1, -1), (1, 1))}


def _check(x: Tensor, flow: Tensor) -> None:
    if x.dim() != 4 or flow.dim() != 4 or flow.shape[1] != 2 \
            or flow.shape[0] != x.shape[0] or flow.shape[2:] != x.shape[2:]:
        raise ValueError(f"flow must be (N, 2, H, W) for images (N, C, H, W); got images "
                         f"{tuple(x.shape)}, flow {tuple(flow.shape)}")


def flow_warp(x: Tensor, flow: Tensor) -> Tensor:
    """``x`` (N, C, H, W) resampled bilinearly at each pixel's position plus ``flow`` (eq. 3);
    differentiable in ``x`` and ``flow``."""
    _check(x, flow)
    n, c, h, w = x.shape
    ys = torch.arange(h, device=x.device, dtype=flow.dtype).view(1, h, 1)
    xs = torch.arange(w, device=x.device, dtype=flow.dtype).view(1, 1, w)
    px = (xs + flow[:, 0]).clamp(0, w - 1)
    py = (ys + flow[:, 1]).clamp(0, h - 1)
    x0, y0 = px.detach().floor(), py.detach().floor()
    wx, wy = (px - x0).unsqueeze(1), (py - y0).unsqueeze(1)     # (N, 1, H, W)
    x0, y0 = x0.long(), y0.long()
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    flat = x.reshape(n, c, h * w)

    def at(yy: Tensor, xx: Tensor) -> Tensor:
        idx = (yy * w + xx).view(n, 1, h * w).expand(n, c, h * w)
        return flat.gather(2, idx).view(n, c, h, w)

    top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
    bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
    return top * (1 - wy) + bottom * wy


def flow_grid(flow: Tensor) -> Tensor:
    """The ``grid_sample`` grid (N, H, W, 2), ``align_corners=True``, of the displaced pixel
    centres: what :func:`flow_warp` samples."""
    n, _, h, w = flow.shape
    ys = torch.arange(h, device=flow.device, dtype=flow.dtype).view(1, h, 1)
    xs = torch.arange(w, device=flow.device, dtype=flow.dtype).view(1, 1, w)
    gx = 2 * (xs + flow[:, 0]) / max(w - 1, 1) - 1
    gy = 2 * (ys + flow[:, 1]) / max(h - 1, 1) - 1
    return torch.stack([gx, gy], dim=-1)


def flow_loss(flow: Tensor, neighbours: str = "paper", eps: float = 1e-8) -> Tensor:
    """The flow smoothness l_flow (eq. 4) per sample, (N,): see the module docstring."""
    if neighbours not in NEIGHBOURS:
        raise ValueError(f"neighbours must be one of {', '.join(NEIGHBOURS)}, got {neighbours!r}")
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow must be (N, 2, H, W), got {tuple(flow.shape)}")
    n, _, h, w = flow.shape
    if neighbours == "code":
        padded = F.pad(flow, (1, 1, 1, 1), mode="replicate")
        total = flow.new_zeros(n)
        for dy, dx in NEIGHBOURS["code"]:
            q = padded[:, :, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
            total = total + ((flow - q).pow(2).sum(1) + eps).sqrt().flatten(1).sum(1)
        return total
    # 4-neighbourhood inside the image: each horizontal and vertical pair, counted twice
    dh = (flow[:, :, :, 1:] - flow[:, :, :, :-1]).pow(2).sum(1)
    dv = (flow[:, :, 1:, :] - flow[:, :, :-1, :]).pow(2).sum(1)
    return 2 * ((dh + eps).sqrt().flatten(1).sum(1) + (dv + eps).sqrt().flatten(1).sum(1))
