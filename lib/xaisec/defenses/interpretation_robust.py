"""Interpretation-based robust training (Boopathy et al., ICML 2020, reference [45] of the
AdvEdge paper; AdvEdge Sec. VI-B, Table VI; docs/settings.md#advedge).

The L1 2-class interpretation discrepancy of a benign input x and a perturbed x_hat,

    D(x, x_hat) = 1/2 (||g_y(x) - g_y(x_hat)||_1 + ||g_t(x) - g_t(x_hat)||_1),

with g_c the interpreter's map for class c (CAM in the paper's Table VI), y the label and t a
second class, is maximised over the L-inf ball by PGD (D_worst), and the model is trained on

    CE(f(x), y) + gamma x D_worst(x, x_hat).

Choices of this project (the paper gives none): t is the most likely class other than y
(no random numbers); the maps are the explainer's (CAM: min-max normalised at feature
resolution) and the L1 norm a sum over the map. The inner maximisation runs with the model in
evaluation mode (no BatchNorm statistic moves while crafting, as adversarial training crafts
its inputs); the penalty D(x, x_hat) that is trained on runs in training mode, like the
cross-entropy beside it (batch statistics). A first version took the penalty in evaluation
mode too: its gradient, with the running statistics held fixed, rescaled weights that batch
statistics make invisible to the cross-entropy, and the evaluation-mode accuracy of a
fine-tuned WRN-16-2 fell to chance while its training accuracy held (config/cpu.yaml).
With ``gamma = 0`` or ``eps = 0`` (D is then identically 0) the penalty is skipped and the
training follows plain training exactly. The inner PGD starts at a uniform point of the eps
ball (D is 0 at x, where its gradient vanishes), drawn from its own generator (``seed``,
advanced per batch; the training's random numbers are not touched), and takes ``steps``
signed steps of ``alpha``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xaisec.attacks.pgd import project_linf
from xaisec.defenses.adversarial import crafted_in_eval_mode
from xaisec.defenses.training import TrainingDefense

__all__ = ["InterpretationRobustTraining", "interpretation_discrepancy", "second_class"]


def second_class(logits: Tensor, y: Tensor) -> Tensor:
    """The most likely class other than ``y`` per sample."""
    return logits.detach().scatter(1, y[:, None], float("-inf")).argmax(1)


def _maps(explainer, x: Tensor, c: Tensor, create_graph: bool) -> Tensor:
    return explainer.attribute(x, target=c, create_graph=create_graph).maps


def interpretation_discrepancy(explainer, x: Tensor, x_hat: Tensor, y: Tensor, t: Tensor,
                               create_graph: bool = False) -> Tensor:
    """D(x, x_hat) per sample (N,): the mean over y and t of the L1 distance (summed over the
    map) between the maps of x and x_hat for that class."""
    d = 0
    for c in (y, t):
        a = _maps(explainer, x, c, create_graph)
        b = _maps(explainer, x_hat, c, create_graph)
        d = d + (a - b).abs().flatten(1).sum(1)
    return d / 2


class InterpretationRobustTraining(TrainingDefense):
    """CE + gamma x the worst-case 2-class interpretation discrepancy (module docstring).
    ``explainer``: a registered explainer name built with ``explainer_settings`` (default CAM
    at feature resolution, the paper's Table VI) or a factory ``model -> explainer``; gamma,
    eps (Table VI: up to 10/255), alpha, steps of the inner PGD, seed of its random start."""

    def __init__(self, explainer="cam", gamma: float = 0.1, eps: float = 8 / 255,
                 alpha: float = 2 / 255, steps: int = 10, seed: int = 0,
                 explainer_settings: dict | None = None):
        if not (callable(explainer) or isinstance(explainer, str)):
            raise TypeError("explainer must be an explainer name or a factory model -> "
                            "explainer")
        if gamma < 0 or eps < 0 or alpha < 0 or int(steps) < 0:
            raise ValueError("gamma, eps, alpha and steps must be >= 0")
        self.explainer = explainer
        self.explainer_settings = dict(explainer_settings if explainer_settings is not None
                                       else ({"upsample": False} if explainer == "cam" else {}))
        self.gamma, self.eps, self.alpha, self.steps = float(gamma), float(eps), float(alpha), \
            int(steps)
        self.seed = int(seed)
        self._gen = torch.Generator().manual_seed(self.seed)

    def build_explainer(self, model: nn.Module):
        if callable(self.explainer):
            return self.explainer(model)
        from xaisec.explainers import make_explainer

        return make_explainer(self.explainer, model, **self.explainer_settings)

    def worst_case(self, expl, model: nn.Module, x: Tensor, y: Tensor, t: Tensor) -> Tensor:
        """PGD on D(x, x_hat) over the eps ball (evaluation mode; detached)."""
        def run():
            if self.eps == 0:
                return x.detach().clone()
            noise = torch.rand(x.shape, generator=self._gen, dtype=x.dtype).to(x.device)
            x_hat = project_linf(x.detach() + (2 * noise - 1) * self.eps, x, self.eps)
            for _ in range(self.steps):
                a = x_hat.requires_grad_(True)
                d = interpretation_discrepancy(expl, x, a, y, t, create_graph=True).sum()
                (g,) = torch.autograd.grad(d, a)
                x_hat = project_linf(a.detach() + self.alpha * g.sign(), x, self.eps)
            return x_hat.detach()

        return crafted_in_eval_mode(model, run)

    def loss(self, model, x, y):
        return self.loss_and_logits(model, x, y)[0]

    def loss_and_logits(self, model, x, y):
        logits = model(x)
        ce = F.cross_entropy(logits, y)
        if self.gamma == 0 or self.eps == 0:     # D(x, x) = 0: nothing to penalise
            return ce, logits
        expl = self.build_explainer(model)
        t = second_class(logits, y)
        x_hat = self.worst_case(expl, model, x, y, t)
        d = interpretation_discrepancy(expl, x, x_hat, y, t, create_graph=True)
        return ce + self.gamma * d.mean(), logits
