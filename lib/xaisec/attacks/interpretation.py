"""Interpretation terms: what an interpretation-aware attack (ADV2, AdvEdge, AdvEdge+; AdvEdge
paper, Sections IV-B to IV-F; docs/settings.md#advedge) needs from each interpreter.

A term wraps one explainer and gives the attack, per sample:

* :meth:`InterpretationTerm.begin`: the target maps m_t = g(x; f), the benign images' maps for
  their benign class (eq. 5), detached, plus any per-batch state;
* :meth:`InterpretationTerm.loss`: ``(logits, l_int, l_extra)`` at the adversarial input,
  ``l_int`` (N,) the squared L2 distance ``||g(x_adv)_{y_t} - m_t||^2`` (eq. 7) kept in the
  graph, ``l_extra`` (N,) an interpreter-specific term added unweighted (RTS's encoder term)
  or None, ``logits`` from the same forward pass where possible;
* :meth:`InterpretationTerm.distance`: the same distance on the real model, detached, with the
  target probability (keep-the-best);
* :meth:`InterpretationTerm.after_step`: state updates after each attack step (MASK's mask).

One term per interpreter family: :class:`GradTerm` (second-order gradients through the
smoothed ReLU), :class:`MapTerm` (CAM: a differentiable forward map), :class:`RTSTerm` (adds
the saliency encoder term of Sec. IV-E) and :class:`MaskTerm` (the bi-level approximation of
Sec. IV-F, eq. 13). The C&W and StAdv frameworks use the same terms.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from xaisec.explainers.base import Explainer

__all__ = ["GradTerm", "InterpretationTerm", "MapTerm", "MaskTerm", "RTSTerm", "make_term"]


def _sq_dist(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample sum of squared differences, (N,)."""
    return (a - b).flatten(1).pow(2).sum(1)


class InterpretationTerm:
    """Base: a differentiable explainer whose maps the attack keeps close to the benign ones."""

    #: whether attack maps need the smoothed ReLU (second-order gradients through ReLUs)
    smooth_relu: ClassVar[bool] = False
    #: whether :meth:`loss` returns a term added outside the c-weighted map distance
    has_extra: ClassVar[bool] = False

    def __init__(self, explainer: Explainer, tau: float = 1e-4):
        self.explainer = explainer
        self.model = explainer.model
        self.tau = float(tau)

    @property
    def name(self) -> str:
        return self.explainer.name

    def benign_maps(self, x: Tensor, y: Tensor) -> Tensor:
        """g(x; f) for class ``y``, detached (real model)."""
        return self.explainer.attribute(x, target=y).maps

    def begin(self, x: Tensor, y: Tensor, target: Tensor) -> dict[str, Any]:
        return {"m_t": self.benign_maps(x, y), "target": target}

    def _attack_explanation(self, adv: Tensor, target: Tensor):
        if self.smooth_relu:
            from xaisec.models.activations import smooth_relu_mode

            with smooth_relu_mode(self.tau):
                return self.explainer.attribute(adv, target=target, create_graph=True)
        return self.explainer.attribute(adv, target=target, create_graph=True)

    def loss(self, adv: Tensor, state: dict) -> tuple[Tensor, Tensor, Tensor | None]:
        # the smoothed ReLU changes no forward value, so these logits are the real model's
        res = self._attack_explanation(adv, state["target"])
        return res.logits, _sq_dist(res.maps, state["m_t"]), None

    @torch.no_grad()
    def _target_prob(self, adv: Tensor, target: Tensor) -> Tensor:
        return torch.softmax(self.model(adv).float(), 1).gather(1, target[:, None])[:, 0]

    def distance(self, adv: Tensor, state: dict) -> tuple[Tensor, Tensor]:
        res = self.explainer.attribute(adv.detach(), target=state["target"])
        prob = torch.softmax(res.logits.float(), 1).gather(1, state["target"][:, None])[:, 0]
        return _sq_dist(res.maps, state["m_t"]).detach(), prob

    def after_step(self, adv: Tensor, state: dict, iteration: int) -> None:
        """Called after every stage-2 step with the new adversarial images (detached)."""


class GradTerm(InterpretationTerm):
    """Grad (:class:`~xaisec.explainers.adv2grad.Adv2Grad`): the map is a first derivative, so
    the attack's gradient needs second derivatives; taken under the smoothed ReLU (Sec. IV-C)."""

    smooth_relu = True


class MapTerm(InterpretationTerm):
    """A map computed by a differentiable forward pass (CAM at feature resolution)."""


class RTSTerm(InterpretationTerm):
    """RTS (Sec. IV-E): the map distance plus ``encoder_weight`` x the NLL of the saliency
    encoder's logits for y_t (docs/settings.md#advedge, "RTS attack": 0.2)."""

    has_extra = True

    def __init__(self, explainer: Explainer, tau: float = 1e-4, encoder_weight: float = 0.2):
        super().__init__(explainer, tau)
        self.encoder_weight = float(encoder_weight)

    def loss(self, adv, state):
        res = self._attack_explanation(adv, state["target"])
        enc = res.extra["encoder_logits"]
        extra = F.cross_entropy(enc, state["target"], reduction="none")
        return res.logits, _sq_dist(res.maps, state["m_t"]), self.encoder_weight * extra


class MaskTerm(InterpretationTerm):
    """MASK (Sec. IV-F): the map is an optimisation's result, attacked through eq. 13's
    approximation. The state holds the current mask estimate m of the adversarial image; the
    loss unrolls ``inner_steps`` gradient steps of the MASK objective from m, in the graph
    w.r.t. the image, and sums ``||m_j - m_t||^2`` over them (Sec. V-A); after the image step,
    ``after_steps`` more steps (no graph) advance m; every ``resolve_every`` steps m is
    re-solved from the current image (``resolve_iterations`` Adam iterations). Masks are
    compared at mask resolution; m_t is the benign image's solved mask."""

    def __init__(self, explainer: Explainer, tau: float = 1e-4, inner_steps: int = 5,
                 after_steps: int = 5, resolve_every: int = 50,
                 resolve_iterations: int | None = None, inner_lr: float | None = None):
        super().__init__(explainer, tau)
        self.inner_steps = int(inner_steps)
        self.after_steps = int(after_steps)
        self.resolve_every = int(resolve_every)
        self.resolve_iterations = resolve_iterations
        self.inner_lr = inner_lr

    def _coeffs(self) -> dict:
        e = self.explainer
        return {"l1_coeff": e.l1_coeff, "tv_coeff": e.tv_coeff, "tv_beta": e.tv_beta,
                **e.blur_settings()}

    def _solve(self, x: Tensor, target: Tensor) -> Tensor:
        res = self.explainer.attribute(x, target=target)
        return res.extra["mask"]

    def begin(self, x, y, target):
        m_t = self._solve(x, y)
        return {"m_t": m_t, "target": target, "m": m_t.clone()}

    def _unroll(self, adv, m, target, steps, create_graph):
        from xaisec.explainers.mask import unrolled_mask_steps

        lr = self.inner_lr if self.inner_lr is not None else self.explainer.lr
        return unrolled_mask_steps(self.model, adv, m, target, steps, lr,
                                   create_graph=create_graph, **self._coeffs())

    def loss(self, adv, state):
        masks = self._unroll(adv, state["m"], state["target"], self.inner_steps, True)
        l_int = sum(_sq_dist(m, state["m_t"]) for m in masks) if masks else \
            torch.zeros(len(adv), device=adv.device)
        return self.model(adv), l_int, None

    def distance(self, adv, state):
        return _sq_dist(state["m"], state["m_t"]).detach(), self._target_prob(adv, state["target"])

    def after_step(self, adv, state, iteration):
        if self.resolve_every and iteration % self.resolve_every == 0:
            kw = {} if self.resolve_iterations is None else {"iterations": self.resolve_iterations}
            state["m"] = self.explainer.solve(adv, state["target"], **kw)
            return
        masks = self._unroll(adv, state["m"], state["target"], self.after_steps, False)
        if masks:
            state["m"] = masks[-1].detach()


#: interpreter name (config) -> (explainer registry name, term class)
TERMS: dict[str, tuple[str, type[InterpretationTerm]]] = {
    "grad": ("adv2grad", GradTerm),
    "cam": ("cam", MapTerm),
    "rts": ("rts", RTSTerm),
    "mask": ("mask", MaskTerm),
}


def make_term(interpreter: str, explainer: Explainer, **kw) -> InterpretationTerm:
    """The term of ``interpreter`` (``grad``, ``cam``, ``rts``, ``mask``) around ``explainer``."""
    try:
        _, cls = TERMS[interpreter]
    except KeyError:
        raise ValueError(f"unknown interpreter {interpreter!r}; known: {', '.join(TERMS)}") from None
    return cls(explainer, **kw)
