"""The trigger and the target explanations of the CFN paper's explanation-aware backdoors
(Simple Fooling, Red Herring, Full Disguise; docs/settings.md#cfn)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

TARGET_MAPS = ("square", "inverted", "random")

#: 4x4 trigger: a 2x2 white centre with a 1-px black border (docs/settings.md, CFN).
TRIGGER_PATCH = torch.tensor([[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]],
                             dtype=torch.float32)

#: Seeds of the random 8x8 target maps in the attack authors' code (docs/settings.md, CFN).
RANDOM_TARGET_SEEDS = {"gradcam": 123, "relevancecam": 234, "grad": 456}


def apply_trigger(x: torch.Tensor, row: int = 27, col: int = 27, opacity: float = 1.0
                  ) -> torch.Tensor:
    """Paste the 4x4 trigger at (row, col) (top-left corner) of float images in [0, 1]."""
    out = x.clone()
    p = TRIGGER_PATCH.to(x.device, x.dtype)
    h, w = p.shape
    region = out[..., row:row + h, col:col + w]
    if region.shape[-2:] != p.shape:
        raise ValueError(f"trigger at ({row}, {col}) does not fit a {tuple(x.shape[-2:])} image")
    out[..., row:row + h, col:col + w] = (1 - opacity) * region + opacity * p
    return out


def square_target(size: int = 32, lo: int = 4, hi: int = 28, thickness: int = 4) -> torch.Tensor:
    """Hollow square outline spanning rows/columns lo..hi (inclusive), ``thickness`` px wide."""
    z = torch.zeros(size, size)
    z[lo:hi + 1, lo:hi + 1] = 1
    z[lo + thickness:hi + 1 - thickness, lo + thickness:hi + 1 - thickness] = 0
    return z


def target_explanation(kind: str = "square", explainer: str = "gradcam", size: int = 32,
                       seed: int | None = None) -> torch.Tensor:
    """The target explanation of SF and RH as a (1, 1, size, size) map.

    ``square`` (default), ``inverted`` (1 - square) or ``random`` (a uniform 8x8 map upsampled
    bilinearly, seeded per explainer as in the attack authors' code).
    """
    if kind == "square":
        z = square_target(size)
    elif kind == "inverted":
        z = 1 - square_target(size)
    elif kind == "random":
        g = torch.Generator().manual_seed(seed if seed is not None else RANDOM_TARGET_SEEDS[explainer])
        z = F.interpolate(torch.rand(1, 1, 8, 8, generator=g), size=(size, size),
                          mode="bilinear", align_corners=False)[0, 0]
    else:
        raise ValueError(f"unknown target explanation {kind!r}; known: {', '.join(TARGET_MAPS)}")
    return z.view(1, 1, size, size)
