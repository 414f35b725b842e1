"""Grad (Simonyan et al. 2014), differentiable: the CFN paper's gradient explanation."""
from __future__ import annotations

import torch
from torch import nn

from xaisec.explainers.base import Explainer, Explanation, resolve_target, target_score
from xaisec.explainers.hooks import capture, get_module, recorded

__all__ = ["Gradient"]


class Gradient(Explainer):
    """Grad: ``|d logit_t / d x_norm|``, shape (N, 3, H, W).

    CFN paper's code (docs/settings.md, CFN, "Grad"): the absolute gradient w.r.t. the
    *normalised* input ``x_norm = (x - mean) / std``, read directly as the gradient w.r.t. the
    output of ``model.normalize`` (a forward hook), which equals ``std * d logit / d x`` per
    channel. ``wrt="input"`` gives ``|d logit_t / d x|`` w.r.t. the [0, 1] input instead (the
    AdvEdge/ADV2 pixel-space gradient, before their channel-max, 4x4 pooling and min-max).

    Differentiable: with ``create_graph=True`` the map is a first derivative kept in the graph,
    so a loss on it needs second derivatives of the activations, which are zero for ReLU
    (fine-tuning swaps in Softplus, :func:`xaisec.models.classifiers.set_activation`; AdvEdge uses
    :class:`~xaisec.explainers.SmoothReLU`).
    """

    name = "grad"
    map_channels = 3
    differentiable = True

    def __init__(
        self, model: nn.Module, wrt: str = "normalized", normalize_module: str = "normalize"
    ):
        super().__init__(model)
        if wrt not in ("normalized", "input"):
            raise ValueError(f"wrt must be 'normalized' or 'input', got {wrt!r}")
        self.wrt = wrt
        self.normalize_module = normalize_module
        if wrt == "normalized":
            get_module(model, normalize_module)

    def _score(self, logits, t):
        """The scalar whose input gradient is the map: the sum of the target logits."""
        return target_score(logits, t)

    def _input_gradient(self, x, target, create_graph):
        """(d score / d wrt, logits, targets) with ``wrt`` the normalised or [0, 1] input."""
        x = self._input_with_grad(x)
        names = (self.normalize_module,) if self.wrt == "normalized" else ()
        with capture(self.model, outputs=names) as (outs, _):
            logits = self.model(x)
            t = resolve_target(target, logits)
            wrt = recorded(outs, self.normalize_module) if self.wrt == "normalized" else x
            (grad,) = torch.autograd.grad(self._score(logits, t), wrt,
                                          create_graph=create_graph)
        return grad, logits, t

    def _attribute(self, x, target, create_graph):
        grad, logits, t = self._input_gradient(x, target, create_graph)
        return Explanation(grad.abs(), logits, t)
