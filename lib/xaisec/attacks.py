"""Untargeted L-inf evasion attacks of the FGSM-XAI paper: FGSM and BIM.

Models take images in [0, 1] and normalise them themselves, so the attacks work in pixel
space. The interface follows torchattacks: ``Attack(model, **hyper)(images, labels)`` returns
adversarial images in [0, 1] with the inputs' shape, dtype and device.

Settings (REFERENCE.md, FGSM-XAI): the paper uses eps = 2.5% (0.025, the default here); the
authors' notebooks use eps = 0.005 with BIM step 1/255 and 10 iterations. Both are reachable
through the keyword arguments.

The attacks never change the model's mode (no ``model.eval()`` / ``model.train()``; callers set
it) and never write into the parameters' ``.grad``: gradients are taken with
:func:`torch.autograd.grad` with respect to the input only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _input_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of the mean cross-entropy w.r.t. ``x`` (no gradient reaches the parameters)."""
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y)
    (grad,) = torch.autograd.grad(loss, x)
    return grad


class Attack:
    """Base class: stores the model, validates the inputs, dispatches to :meth:`forward`."""

    def __init__(self, model: nn.Module, eps: float = 0.025):
        eps = float(eps)
        if not eps >= 0:  # also rejects NaN
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.model = model
        self.eps = eps

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        if labels.shape != images.shape[:1]:
            raise ValueError(
                f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}"
            )
        x = images.detach()
        y = labels.detach().to(device=x.device, dtype=torch.long)
        with torch.enable_grad():
            adv = self.forward(x, y)
        return adv.detach().to(dtype=images.dtype)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v}" for k, v in vars(self).items() if k != "model")
        return f"{type(self).__name__}({hyper})"


class FGSM(Attack):
    """Fast Gradient Sign Method (Goodfellow et al. 2015), untargeted.

    ``x_adv = clamp(x + eps * sign(grad_x CE(model(x), y)), 0, 1)``.
    """

    def forward(self, x, y):
        if self.eps == 0:
            return x.clone()
        grad = _input_grad(self.model, x, y)
        return (x + self.eps * grad.sign()).clamp(0.0, 1.0)


class BIM(Attack):
    """Basic Iterative Method (Kurakin et al. 2017), untargeted, no random start.

    ``steps`` FGSM steps of size ``alpha``; after every step the image is projected onto the
    L-inf ball of radius ``eps`` around the clean ``x`` and clamped to [0, 1].

    With the paper's eps = 0.025 and the notebooks' alpha = 1/255, 10 steps could move a pixel
    by up to 10/255 ~= 0.039 > eps, so the projection binds (with the notebooks' eps = 0.005 it
    binds after the second step).
    """

    def __init__(self, model: nn.Module, eps: float = 0.025, alpha: float = 1 / 255,
                 steps: int = 10):
        super().__init__(model, eps)
        alpha = float(alpha)
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if isinstance(steps, bool) or int(steps) != steps or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        self.alpha = alpha
        self.steps = int(steps)

    def forward(self, x, y):
        if self.eps == 0:
            return x.clone()
        lo = (x - self.eps).clamp(min=0.0)
        hi = (x + self.eps).clamp(max=1.0)
        adv = x.clone()
        for _ in range(self.steps):
            grad = _input_grad(self.model, adv, y)
            adv = torch.max(torch.min(adv + self.alpha * grad.sign(), hi), lo).detach()
        return adv


ATTACKS: dict[str, type[Attack]] = {"fgsm": FGSM, "bim": BIM}


def make_attack(name: str, model: nn.Module, **kw) -> Attack:
    """Build an attack by name (``"fgsm"`` or ``"bim"``, case-insensitive)."""
    key = str(name).lower()
    if key not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; known: {', '.join(sorted(ATTACKS))}")
    return ATTACKS[key](model, **kw)
