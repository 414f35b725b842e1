"""Adversarial training (Madry et al. 2018), the AdvEdge paper's AT defense (Sec. V-G,
Table XI; docs/settings.md#advedge): the model is fine-tuned on PGD adversarial inputs made
with 50, 100 and 150 iterations, a training set three times the original size.

:class:`AdversarialTraining` is a :class:`~xaisec.defenses.training.TrainingDefense`: per batch,
one untargeted L-inf PGD input per entry of ``steps`` (each image appears once per step count,
so an epoch sees the data set ``len(steps)`` times), the loss the mean cross-entropy over them
(plus the clean batch with ``include_clean``). The inputs are crafted with the model in
evaluation mode (no BatchNorm statistics move while crafting; the mode is restored), without
a random start, so crafting consumes no random numbers.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xaisec.attacks.pgd import PGD
from xaisec.defenses.training import TrainingDefense

__all__ = ["AdversarialTraining", "crafted_in_eval_mode"]


def crafted_in_eval_mode(model: nn.Module, fn):
    """``fn()`` with ``model`` in evaluation mode, the previous mode restored after."""
    was = model.training
    model.eval()
    try:
        return fn()
    finally:
        model.train(was)


class AdversarialTraining(TrainingDefense):
    """PGD adversarial training; ``steps``: the PGD iterations of each adversarial copy
    (paper: 50, 100, 150), ``eps``/``alpha``: its budget and step (the attacks' 0.031, 1/255)."""

    def __init__(self, eps: float = 0.031, alpha: float = 1 / 255,
                 steps: Sequence[int] = (50, 100, 150), include_clean: bool = False):
        steps = tuple(int(s) for s in steps)
        if not steps or min(steps) < 1:
            raise ValueError(f"steps must be PGD iteration counts >= 1, got {steps!r}")
        self.eps, self.alpha, self.steps = float(eps), float(alpha), steps
        self.include_clean = bool(include_clean)

    def adversarial(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list:
        """The batch's adversarial copies, one per step count (detached)."""
        return [crafted_in_eval_mode(model, lambda k=k: PGD(
            model, eps=self.eps, alpha=self.alpha, steps=k, random_start=False)(x, y))
            for k in self.steps]

    def loss_and_logits(self, model, x, y):
        """The mean cross-entropy over the copies, and the logits of the strongest copy (the
        most PGD iterations): the epoch's training accuracy is its adversarial accuracy."""
        xs = self.adversarial(model, x, y) + ([x] if self.include_clean else [])
        logits = [model(a) for a in xs]
        loss = torch.stack([F.cross_entropy(z, y) for z in logits]).mean()
        return loss, logits[self.steps.index(max(self.steps))]

    def loss(self, model, x, y):
        return self.loss_and_logits(model, x, y)[0]
