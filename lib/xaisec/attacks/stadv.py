"""ADV2, AdvEdge and AdvEdge+ in the StAdv framework (AdvEdge paper, Sections III and IV-B,
eqs. 3, 4, 7 and 10; docs/settings.md#advedge, "StAdv").

``InterpretationStAdv(model, term=..., variant=...)(x, y, target=y_t)``. The variable is a
per-pixel flow r (N, 2, H, W) in pixels (:mod:`xaisec.attacks.flow`), started at
``flow_init x (U - 0.5)`` (authors' code: 0.2, i.e. +-0.1 px; the uniforms are drawn per
sample from ``seed`` and its pixels, so a batch equals each image alone). N_w, the variant's
edge weights, enters where ``edge_on`` says:

* ``"flow"`` (paper, eq. 10): the effective flow is ``N_w r``, the image ``warp(x, N_w r)``;
  a gated-off flow is exactly 0, so AdvEdge+ leaves those pixels untouched;
* ``"pixels"`` (the authors' notebooks): ``x + N_w (warp(x, r) - x)``.

1. **stage 1**: ``stage1_steps`` Adam steps (``lr``, amsgrad) on ``l_prd + tau x l_flow``,
   l_prd the margin ``max(max_{i != t} z_i - z_t, -kappa)`` (``stage1_loss="margin"``, eq. 4)
   or the NLL of y_t (``"ce"``, the notebooks);
2. **stage 2**: per ``(c, steps)`` phase, a fresh Adam on ``prd_weight x CE + c x l_int +
   the term's extra + tau x l_flow`` (eq. 7);
3. keep-the-best as PGD.

l_flow is taken on the effective flow (``N_w r`` under ``edge_on="flow"``, else r) with the
4-neighbourhood (``neighbours="paper"``) or the notebooks' diagonal neighbours on a
replicate-padded field (``"code"``). ``edge_stages="code"`` drops N_w in stage 2.
"""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from xaisec.attacks.advedge import OptimizerAttack, _sample_uniforms, margin_loss
from xaisec.attacks.base import AttackBatch, Crafted, check_choice, check_nonnegative
from xaisec.attacks.flow import NEIGHBOURS, flow_loss, flow_warp

__all__ = ["InterpretationStAdv"]


class InterpretationStAdv(OptimizerAttack):
    """ADV2 / AdvEdge / AdvEdge+ with StAdv (module docstring). No eps: the flow loss keeps
    the deformation smooth. ``term=None``: a plain targeted StAdv."""

    norm = None
    framework = "stadv"

    def __init__(self, model: nn.Module, eps: None = None, *, tau: float = 5e-4,
                 flow_init: float = 0.2, stage1_loss: str = "margin", kappa: float = 0.0,
                 prd_weight: float = 1.0, edge_on: str = "flow", neighbours: str = "paper",
                 stage1_steps: int = 450,
                 stage2: Sequence = ((0.003, 301), (0.01, 201), (0.05, 101), (0.2, 101)),
                 smoothing: str = "none", **kw):
        super().__init__(model, eps, stage1_steps=stage1_steps, stage2=stage2,
                         smoothing=smoothing, prd_weight=prd_weight, **kw)
        check_choice("stage1_loss", stage1_loss, ("margin", "ce"))
        check_choice("edge_on", edge_on, ("flow", "pixels"))
        check_choice("neighbours", neighbours, tuple(NEIGHBOURS))
        self.tau = check_nonnegative("tau", tau)
        self.flow_init = check_nonnegative("flow_init", flow_init)
        self.stage1_loss, self.edge_on, self.neighbours = stage1_loss, edge_on, neighbours
        self.kappa = check_nonnegative("kappa", kappa)

    def initial_flow(self, x: Tensor) -> Tensor:
        """``flow_init x (U - 0.5)``, (N, 2, H, W), drawn per sample (batch-independent)."""
        n, _, h, w = x.shape
        u = _sample_uniforms(x, self.seed + 1, 2 * h * w).view(n, 2, h, w)
        return self.flow_init * (u - 0.5)

    def effective_flow(self, r: Tensor, weights: Tensor | None) -> Tensor:
        """The flow the image is warped by: ``N_w r`` under ``edge_on="flow"``, else r."""
        return r if weights is None or self.edge_on != "flow" else weights * r

    def image(self, x: Tensor, r: Tensor, weights: Tensor | None) -> Tensor:
        """The adversarial images of flow ``r`` under edge weights ``weights``."""
        if weights is None or self.edge_on == "flow":
            return flow_warp(x, self.effective_flow(r, weights))
        return x + weights * (flow_warp(x, r) - x)

    def forward(self, batch: AttackBatch) -> Crafted:
        x, t = batch.x, batch.target
        w1, w2 = self.stage_weights(x)
        r = self.initial_flow(x).requires_grad_(True)

        def smooth(weights):
            return lambda a, var: self.tau * flow_loss(self.effective_flow(var, weights),
                                                       self.neighbours)

        def prd(logits):
            if self.stage1_loss == "margin":
                return margin_loss(logits, t, self.kappa)
            return F.cross_entropy(logits, t, reduction="none")

        adv = self.stage1(r, lambda var: self.image(x, var, w1),
                          lambda a, logits: prd(logits) + smooth(w1)(a, r))
        if not self.stage2:
            return Crafted(adv, self.stage1_steps)
        return self.stage2_optimize(r, lambda var: self.image(x, var, w2), smooth(w2), batch,
                                    adv)
