"""ADV2, AdvEdge and AdvEdge+ in the C&W (L2) framework (AdvEdge paper, Sections III and
IV-B, eqs. 2, 6 and 9; docs/settings.md#advedge, "C&W").

``InterpretationCW(model, term=..., variant=...)(x, y, target=y_t)``. The variable is w in
tanh space, ``x_hat = (tanh(w) + 1) / 2``, started at the benign image (w0 = atanh(2x - 1),
clipped away from +-1); the perturbation is ``delta = N_w (x_hat - x_hat(w0))`` (eq. 9) and
the adversarial image ``x + delta`` (x_hat(w0) differs from x by at most 1e-6 where x is 0 or
1; subtracting it makes delta exactly 0 at the start, so a gated-off pixel never moves).
N_w is the variant's edge weights (:func:`xaisec.attacks.edges.edge_weights`).

1. **stage 1**: ``stage1_steps`` Adam steps (``lr``, amsgrad as the authors' code) on
   ``dist_weight x ||delta||_2^2 + cls_weight x f`` with f the targeted margin
   ``max(max_{i != t} z_i - z_t, -kappa)`` (authors' code: 1 x L2^2 + 1e-4 x f, kappa 0);
2. **stage 2**: per ``(c, steps)`` phase of the schedule, a fresh Adam on
   ``prd_weight x l_prd + c x l_int + the term's extra + dist_weight x ||delta||_2^2``, with
   l_prd the (optionally label-smoothed) CE (authors' code: 2 x NLL);
3. keep-the-best as PGD (:class:`~xaisec.attacks.advedge.KeepBest`).

``edge_stages="paper"`` keeps N_w in both stages; ``"code"`` drops it in stage 2, which then
optimises the raw candidate ``x_hat`` (the authors' notebooks: the image jumps from
``x + N_w (x_hat - x)`` to ``x_hat`` between the stages).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from xaisec.attacks.advedge import OptimizerAttack, margin_loss
from xaisec.attacks.base import AttackBatch, Crafted, check_nonnegative

__all__ = ["InterpretationCW", "tanh_space"]

_CLIP = 1 - 1e-6


def tanh_space(x: Tensor) -> Tensor:
    """w with ``(tanh(w) + 1) / 2 = x`` (x clipped to keep w finite)."""
    return torch.atanh((2 * x - 1).clamp(-_CLIP, _CLIP))


def _to_image(w: Tensor) -> Tensor:
    return (torch.tanh(w) + 1) / 2


class InterpretationCW(OptimizerAttack):
    """ADV2 / AdvEdge / AdvEdge+ with C&W L2 (module docstring). No eps: the distance term
    keeps the perturbation small. ``term=None``: a plain targeted C&W (stage 2 without a map
    term)."""

    norm = None
    framework = "cw"

    def __init__(self, model: nn.Module, eps: None = None, *, cls_weight: float = 1e-4,
                 kappa: float = 0.0, prd_weight: float = 2.0, dist_weight: float = 1.0,
                 stage1_steps: int = 450,
                 stage2: Sequence = ((0.003, 301), (0.01, 201), (0.05, 101), (0.2, 101)),
                 smoothing: str = "none", **kw):
        super().__init__(model, eps, stage1_steps=stage1_steps, stage2=stage2,
                         smoothing=smoothing, prd_weight=prd_weight, **kw)
        self.cls_weight = check_nonnegative("cls_weight", cls_weight)
        self.kappa = check_nonnegative("kappa", kappa)
        self.dist_weight = check_nonnegative("dist_weight", dist_weight)

    def forward(self, batch: AttackBatch) -> Crafted:
        x, t = batch.x, batch.target
        w1, w2 = self.stage_weights(x)
        w = tanh_space(x)
        start = _to_image(w).detach()

        def image(weights: Tensor | None):
            def fn(var: Tensor) -> Tensor:
                d = _to_image(var) - start
                return (x + (d if weights is None else weights * d)).clamp(0, 1)
            return fn

        def dist(a: Tensor, var=None) -> Tensor:
            return self.dist_weight * (a - x).flatten(1).pow(2).sum(1)

        w = w.clone().requires_grad_(True)
        adv = self.stage1(w, image(w1), lambda a, logits: dist(a) + self.cls_weight
                          * margin_loss(logits, t, self.kappa))
        if not self.stage2:
            return Crafted(adv, self.stage1_steps)
        return self.stage2_optimize(w, image(w2), dist, batch, adv)
