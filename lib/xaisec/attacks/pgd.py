"""PGD (Madry et al. 2018), L-inf, as torchattacks' ``PGD``: the plain targeted reference of the
AdvEdge tables (docs/settings.md#advedge, "budget and step"; the paper has no plain-PGD row: it
shows what the interpretation term buys).

``PGD(model, eps, alpha, steps, random_start)(x, y)``: optional uniform start in the eps ball,
then ``steps`` signed-gradient steps of size ``alpha``, each projected onto the eps ball and
clamped to [0, 1]. Targeted (``target=`` / ``target_fn``) it descends the target's loss, as
torchattacks' targeted mode does.
"""
from __future__ import annotations

import torch
from torch import nn

from xaisec.attacks.base import Attack, AttackBatch, Crafted, check_nonnegative, check_steps

__all__ = ["PGD", "project_linf"]


def project_linf(adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """``adv`` projected onto the L-inf ball of radius ``eps`` around ``x``, then into [0, 1]
    (torchattacks' order: the perturbation clamped, then the image)."""
    return (x + (adv - x).clamp(-eps, eps)).clamp(0.0, 1.0)


class PGD(Attack):
    """L-inf PGD; ``random_start`` draws the start uniformly in the eps ball (torchattacks'
    default is True; the AdvEdge reference runs without, like ADV2's stage 1)."""

    def __init__(self, model: nn.Module, eps: float = 0.031, alpha: float = 1 / 255,
                 steps: int = 300, random_start: bool = False,
                 generator: torch.Generator | None = None, **kw):
        super().__init__(model, eps, **kw)
        self.alpha = check_nonnegative("alpha", alpha)
        self.steps = check_steps("steps", steps)
        self.random_start = bool(random_start)
        self.generator = generator

    def forward(self, batch: AttackBatch) -> Crafted:
        x = batch.x
        adv = x.clone()
        if self.random_start:
            noise = torch.rand(x.shape, generator=self.generator, dtype=x.dtype)
            adv = (adv + (2 * noise.to(x.device) - 1) * self.eps).clamp(0.0, 1.0)
        for _ in range(self.steps):
            grad = self.gradient(adv, batch)
            adv = project_linf(adv + self.alpha * grad.sign(), x, self.eps).detach()
        return Crafted(adv, self.steps)
