"""Edge maps of AdvEdge and AdvEdge+ (AdvEdge paper, Section IV-B; docs/settings.md#advedge,
"edge map", "AdvEdge step", "AdvEdge+ step").

``sobel_edges(x)`` is the Sobel magnitude of the channel-mean grayscale benign image in
[0, 1], computed once per image, batched on the images' device. It equals
``skimage.filters.sobel`` (default ``mode="reflect"``) of the same grayscale image: per axis,
a correlation with the derivative kernel [1, 0, -1] along the axis and the smoothing kernel
[1, 2, 1] / 4 across it, then ``sqrt((g_h^2 + g_v^2) / 2)``. scikit-image's ``reflect``
border (scipy.ndimage: ``d c b a | a b c d | d c b a``) repeats the edge pixel, which for a
one-pixel pad is torch's ``replicate`` padding.

``edge_weights(edges, variant, phi)`` is the N_w of eq. 8: ones for ADV2, the edge map for
AdvEdge, the binary gate ``edges > phi`` for AdvEdge+.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["VARIANTS", "edge_weights", "sobel_edges"]

#: the three attack variants the paper compares (Sec. IV-B): the ADV2 baseline, the edge-weighted
#: step (AdvEdge) and the edge-gated step (AdvEdge+)
VARIANTS = ("adv2", "advedge", "advedge+")


def sobel_edges(x: Tensor) -> Tensor:
    """Sobel edge magnitude (N, 1, H, W) of the channel mean of ``x`` (N, C, H, W)."""
    if x.dim() != 4:
        raise ValueError(f"x must be (N, C, H, W), got shape {tuple(x.shape)}")
    gray = x.detach().mean(dim=1, keepdim=True)
    padded = F.pad(gray, (1, 1, 1, 1), mode="replicate")
    smooth = torch.tensor([1.0, 2.0, 1.0], dtype=gray.dtype, device=gray.device) / 4
    deriv = torch.tensor([1.0, 0.0, -1.0], dtype=gray.dtype, device=gray.device)
    # correlation kernels (conv2d correlates): derivative along rows (axis 0) and columns (axis 1)
    k_rows = (deriv[:, None] * smooth[None, :])[None, None]
    k_cols = (smooth[:, None] * deriv[None, :])[None, None]
    g = F.conv2d(padded, torch.cat([k_rows, k_cols]))
    return torch.sqrt((g * g).sum(dim=1, keepdim=True) / 2)


def edge_weights(edges: Tensor, variant: str, phi: float = 0.1) -> Tensor:
    """N_w of eq. 8 for ``variant``: ones (``adv2``), ``edges`` (``advedge``) or the gate
    ``edges > phi`` as 0/1 (``advedge+``); same shape and dtype as ``edges``."""
    if variant == "adv2":
        return torch.ones_like(edges)
    if variant == "advedge":
        return edges
    if variant == "advedge+":
        return (edges > phi).to(edges.dtype)
    raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
