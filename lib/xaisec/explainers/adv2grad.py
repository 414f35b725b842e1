"""Grad as ADV2 and AdvEdge attack it (AdvEdge paper, Section IV-C; docs/settings.md#advedge,
"Grad map"): the absolute input gradient, max over channels, average pooling, min-max per
image. Differentiable, for the interpretation loss of the attacks.

The paper writes the gradient of the class logit, ``m = |d f_y(x) / d x|`` (``of="logit"``,
the default); the authors' code takes the gradient of the NLL loss of the class
(``of="loss"``). Both are taken w.r.t. the normalised input (the output of the model's
``normalize`` module), as the authors' code does. The attack backpropagates a loss on this map
to the input, which needs second derivatives of the ReLUs: it runs this explainer inside
:func:`xaisec.models.activations.smooth_relu_mode`; benign and evaluation maps use the real
ReLU model.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from xaisec.explainers.base import Explanation
from xaisec.explainers.gradient import Gradient
from xaisec.metrics.maps import minmax

__all__ = ["Adv2Grad", "default_pool"]


def default_pool(size: int) -> int:
    """The average-pooling kernel of the authors' code for an input of ``size`` pixels: 2 at
    CIFAR's 32 px (ADV2's CIFAR code, 16x16 maps), 4 at ImageNet's 224 px and above."""
    return 2 if size <= 64 else 4


class Adv2Grad(Gradient):
    """``minmax(avgpool_k(max_c |d s_t / d x_norm|))``, shape (N, 1, H / k, W / k).

    ``of``: ``"logit"`` (s_t = logit of class t; paper) or ``"loss"`` (s_t = -log softmax_t;
    authors' code). ``pool``: the pooling kernel k (None: :func:`default_pool` of the input
    height). ``wrt``: ``"normalized"`` (the output of ``normalize_module``; authors' code) or
    ``"input"`` (the [0, 1] pixels). The gradient itself is :class:`Gradient`'s.
    """

    name = "adv2grad"
    map_channels = 1
    differentiable = True

    def __init__(self, model: nn.Module, of: str = "logit", pool: int | None = None,
                 wrt: str = "normalized", normalize_module: str = "normalize"):
        super().__init__(model, wrt=wrt, normalize_module=normalize_module)
        if of not in ("logit", "loss"):
            raise ValueError(f"of must be 'logit' (paper) or 'loss' (authors' code), got {of!r}")
        if pool is not None and (isinstance(pool, bool) or int(pool) != pool or pool < 1):
            raise ValueError(f"pool must be a positive integer or None, got {pool!r}")
        self.of = of
        self.pool = None if pool is None else int(pool)

    def _score(self, logits, t):
        if self.of == "logit":
            return super()._score(logits, t)
        return -F.cross_entropy(logits, t, reduction="sum")

    def _attribute(self, x, target, create_graph):
        grad, logits, t = self._input_gradient(x, target, create_graph)
        k = self.pool or default_pool(x.shape[-2])
        m = grad.abs().amax(dim=1, keepdim=True)
        if k > 1:
            m = F.avg_pool2d(m, k)
        return Explanation(minmax(m), logits, t)
