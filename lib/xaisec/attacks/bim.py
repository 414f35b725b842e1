"""BIM, the Basic Iterative Method (Kurakin et al. 2017), without random start.

FGSM-XAI settings (docs/settings.md): eps = 0.025 (paper); the authors' notebooks use eps = 0.005,
step 1/255 and 10 iterations. With eps = 0.025 and alpha = 1/255, 10 steps could move a pixel by
up to 10/255 ~= 0.039 > eps, so the projection binds (with eps = 0.005 after the second step).
"""
from __future__ import annotations

import torch
from torch import nn

from xaisec.attacks.base import Attack, AttackBatch, Crafted, check_nonnegative, check_steps


class BIM(Attack):
    """``steps`` signed-gradient steps of size ``alpha``; after every step the image is
    projected onto the L-inf ball of radius ``eps`` around the clean ``x`` and clamped to
    [0, 1]. Targeted (``target=`` / ``target_fn``) it descends the loss of the target.
    """

    def __init__(self, model: nn.Module, eps: float = 0.025, alpha: float = 1 / 255,
                 steps: int = 10, **kw):
        super().__init__(model, eps, **kw)
        self.alpha = check_nonnegative("alpha", alpha)
        self.steps = check_steps("steps", steps)

    def forward(self, batch: AttackBatch) -> Crafted:
        x = batch.x
        if self.eps == 0:
            return Crafted(x.clone(), 0)
        lo = (x - self.eps).clamp(min=0.0)
        hi = (x + self.eps).clamp(max=1.0)
        adv = x.clone()
        for _ in range(self.steps):
            grad = self.gradient(adv, batch)
            adv = torch.max(torch.min(adv + self.alpha * grad.sign(), hi), lo).detach()
        return Crafted(adv, self.steps)
