"""FGSM, the Fast Gradient Sign Method (Goodfellow et al. 2015).

FGSM-XAI settings (docs/settings.md): the paper uses eps = 2.5% (0.025, the default here).
"""
from __future__ import annotations

from torch import nn

from xaisec.attacks.base import Attack, AttackBatch, Crafted


class FGSM(Attack):
    """One signed-gradient step of size ``eps``:
    ``x_adv = clamp(x + eps * sign(grad_x J), 0, 1)`` with ``J = CE(model(x), y)`` (untargeted)
    or ``-CE(model(x), y_t)`` (targeted); see :class:`~xaisec.attacks.base.Attack` for the
    loss and extra-term hooks.
    """

    def __init__(self, model: nn.Module, eps: float = 0.025, **kw):
        super().__init__(model, eps, **kw)

    def forward(self, batch: AttackBatch) -> Crafted:
        x = batch.x
        if self.eps == 0:
            return Crafted(x.clone(), 0)
        grad = self.gradient(x, batch)
        return Crafted((x + self.eps * grad.sign()).clamp(0.0, 1.0), 1)
