"""AdvEdge's smoothed ReLU: relu forward, a smooth surrogate derivative backward.

The interpretation-aware attacks on Grad (AdvEdge/ADV2) backpropagate a loss on the gradient
map to the input, which needs second derivatives of the activations; ReLU's are zero, so they
replace ReLU's backward by a smooth surrogate (:class:`SmoothReLU`, installed with
:func:`use_smooth_relu`).

This module imports nothing from :mod:`xaisec.models.classifiers`, so ``models`` may import
:class:`SmoothReLU` from the package without an import cycle.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["SmoothReLU", "smooth_relu", "use_smooth_relu"]


class _SmoothReLUFunction(torch.autograd.Function):
    """relu(z) forward; backward ``g * h(z)`` with AdvEdge's smoothed derivative (eq. in
    Section III-C of the AdvEdge paper; docs/settings.md, AdvEdge, "ReLU smoothing")::

        h(z) = 1 + z / sqrt(z^2 + tau)   for z <  0
        h(z) =     z / sqrt(z^2 + tau)   for z >= 0

    The backward is written with differentiable torch operations on the saved input, so it
    has its own derivative (double backward): ``d h / d z = tau / (z^2 + tau)^(3/2)`` on both
    sides of 0, non-zero, unlike ReLU's. (h jumps from 1 to 0 at z = 0, as in the formula.)
    """

    @staticmethod
    def forward(ctx, z: Tensor, tau: float) -> Tensor:
        ctx.save_for_backward(z)
        ctx.tau = tau
        return z.clamp_min(0)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (z,) = ctx.saved_tensors
        s = z / torch.sqrt(z * z + ctx.tau)
        h = torch.where(z < 0, 1 + s, s)
        return grad_out * h, None


def smooth_relu(z: Tensor, tau: float = 1e-4) -> Tensor:
    """Functional form of :class:`SmoothReLU`."""
    return _SmoothReLUFunction.apply(z, tau)


class SmoothReLU(nn.Module):
    """ReLU whose backward is AdvEdge's smoothed derivative (see :func:`smooth_relu`).

    The forward value is exactly ``relu(z)``; only gradients differ (by at most
    ``tau / (2 z^2)`` away from 0), and second derivatives are non-zero, which the
    interpretation-aware attacks on Grad need. ``tau`` = 1e-4 (docs/settings.md, AdvEdge).
    """

    def __init__(self, tau: float = 1e-4):
        super().__init__()
        self.tau = float(tau)

    def forward(self, z: Tensor) -> Tensor:
        return smooth_relu(z, self.tau)

    def extra_repr(self) -> str:
        return f"tau={self.tau}"


def use_smooth_relu(model: nn.Module, tau: float = 1e-4) -> nn.Module:
    """Replace every activation module (ReLU, Softplus or SmoothReLU) of ``model`` in place by
    :class:`SmoothReLU` (same attribute names), and return the model.

    Functional ``F.relu`` calls inside ``forward`` methods are not reached; the project's
    models use activation modules only.
    """
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, (nn.ReLU, nn.Softplus, SmoothReLU)):
                setattr(module, child_name, SmoothReLU(tau))
    return model
