"""Explainers: one base class, one registry, one config adapter, one batched loop.

::

    expl = make_explainer("gradcam", model)                  # or GradCAM(model, layer=...)
    res = expl.attribute(x, target=None)                     # x: (N, C, H, W) in [0, 1]
    res.maps, res.logits, res.target, res.pred, res.confidence
    maps = expl(x)                                           # the maps only
    res = explain_batches(expl, x, batch_size=64, device="cuda", out_device="cpu")

``target`` is ``None`` (the predicted, argmax, class: docs/settings.md, "explained class"), an
int, or a LongTensor (N,). The device comes from the inputs; the model's train/eval mode is
never changed (BatchNorm in train mode or the CFN defense couple the samples of a batch; the
maps are then the gradients of the *sum* of the target logits, as in Captum).

====================  ========================================================  ==========  =====
name                  map                                                       shape       diff.
====================  ========================================================  ==========  =====
``grad``              ``|d logit_t / d x_norm|`` (normalised input), CFN          (N,3,H,W)   yes
``gradcam``           ReLU(sum_k mean_hw(d logit_t / d A_k) A_k), upsampled      (N,1,H,W)   yes
``relevancecam``      ReLU(sum_k R_k A_k), R: CLRP + LRP z+ (see the class)      (N,1,H,W)   yes
``cam``               minmax(sum_k w_{t,k} F_k), upsampled (AdvEdge)             (N,1,H,W)   yes
``adv2grad``          minmax(avgpool(max_c |d s_t / d x_norm|)) (ADV2/AdvEdge)   (N,1,h,w)   yes
``mask``              MASK (meaningful perturbation): 1 - upsampled mask         (N,1,H,W)   no
``rts``               RTS: trained masking model's mask for the class (AdvEdge)  (N,1,H,W)   yes
``saliency``          Captum Saliency, ``|d logit_t / d x|``                     (N,3,H,W)   no
``ig``                Captum IntegratedGradients, zero baseline                  (N,3,H,W)   no
``deepliftshap``      Captum DeepLiftShap over a baseline distribution           (N,3,H,W)   no
``smoothgrad``        Captum NoiseTunnel (smoothgrad) over Saliency              (N,3,H,W)   no
``lime``              Captum's Lime over SLIC superpixels (+ ``extra["mask"]``)  (N,3,H,W)   no
====================  ========================================================  ==========  =====

The maps are raw (not normalised), except CAM, which is min-max normalised per image as
AdvEdge/ADV2 use it. Differentiable ("diff.") explainers take ``create_graph=True``: the map
stays in the graph, for the explanation-aware backdoor fine-tuning (loss backpropagated to the
weights; needs second derivatives of the activations, so fine-tuning swaps in Softplus) and
the AdvEdge/ADV2 attacks (loss backpropagated to an input that requires grad; for Grad they
use :class:`SmoothReLU`). The Captum wrappers give detached maps and process the input in
chunks (``batch_size``; the methods that expand the batch have their own internal batch size).

Adding a method: a file with an :class:`Explainer` subclass (``name``, ``_attribute``) and one
line in :data:`EXPLAINERS` below (or :func:`register` from outside the package).
"""
from __future__ import annotations

from torch import nn

from xaisec.explainers.adv2grad import Adv2Grad
from xaisec.explainers.base import ChunkedExplainer, Explainer, Explanation, resolve_target, seeded
from xaisec.explainers.cam import CAM, GradCAM
from xaisec.explainers.deepliftshap import DeepLiftShap
from xaisec.explainers.gradient import Gradient
from xaisec.explainers.hooks import capture, default_layer, get_module
from xaisec.explainers.integrated_gradients import IntegratedGradients
from xaisec.explainers.lime import Lime, slic_segments
from xaisec.explainers.loop import explain_batches, iter_explanations
from xaisec.explainers.mask import Mask
from xaisec.metrics.maps import minmax, normalize_max, normalize_zscore_channelmax
from xaisec.explainers.relevancecam import RelevanceCAM
from xaisec.explainers.rts import RTS
from xaisec.explainers.saliency import Saliency, SmoothGrad
from xaisec.models.activations import SmoothReLU, smooth_relu, use_smooth_relu

__all__ = [
    "Adv2Grad",
    "CAM",
    "ChunkedExplainer",
    "DeepLiftShap",
    "EXPLAINERS",
    "Explainer",
    "Explanation",
    "GradCAM",
    "Gradient",
    "IntegratedGradients",
    "Lime",
    "Mask",
    "RTS",
    "RelevanceCAM",
    "Saliency",
    "SmoothGrad",
    "SmoothReLU",
    "capture",
    "default_layer",
    "explain_batches",
    "explainer_from_settings",
    "explainer_kwargs",
    "get_module",
    "iter_explanations",
    "make_explainer",
    "minmax",
    "normalize_max",
    "normalize_zscore_channelmax",
    "register",
    "resolve_target",
    "seeded",
    "slic_segments",
    "smooth_relu",
    "use_smooth_relu",
]

#: name -> explainer class, every method of every paper
EXPLAINERS: dict[str, type[Explainer]] = {
    "grad": Gradient,
    "gradcam": GradCAM,
    "relevancecam": RelevanceCAM,
    "cam": CAM,
    "saliency": Saliency,
    "ig": IntegratedGradients,
    "deepliftshap": DeepLiftShap,
    "smoothgrad": SmoothGrad,
    "lime": Lime,
    "adv2grad": Adv2Grad,
    "mask": Mask,
    "rts": RTS,
}


def register(cls: type[Explainer] | None = None, *, name: str | None = None):
    """Add an :class:`Explainer` subclass to :data:`EXPLAINERS` under ``name`` (default: its
    ``name`` attribute); usable as a class decorator. A name that is taken by another class is
    a ValueError."""

    def add(c):
        if not (isinstance(c, type) and issubclass(c, Explainer)):
            raise TypeError(f"{c!r} is not an Explainer subclass")
        key = name or c.name
        if not key:
            raise ValueError(f"{c.__name__} has no name")
        if EXPLAINERS.get(key, c) is not c:
            raise ValueError(f"explainer name {key!r} is taken by {EXPLAINERS[key].__name__}")
        EXPLAINERS[key] = c
        return c

    return add if cls is None else add(cls)


def _lookup(name: str) -> type[Explainer]:
    try:
        return EXPLAINERS[name]
    except KeyError:
        raise ValueError(f"unknown explainer {name!r}; known: {', '.join(EXPLAINERS)}") from None


def make_explainer(name: str, model: nn.Module, **kwargs) -> Explainer:
    """Build the explainer registered as ``name`` (see :data:`EXPLAINERS`); an unknown name is
    a ValueError listing the known ones."""
    return _lookup(name)(model, **kwargs)


def explainer_kwargs(name: str, settings: dict | None = None,
                     model: nn.Module | None = None) -> dict:
    """Constructor arguments of explainer ``name`` from a config section, the one adapter
    from config to explainers (each class's ``settings_kwargs`` knows its keys):

    ==============================  ============================================================
    section (config.yaml)           used by
    ==============================  ============================================================
    ``xai``                         ``relevancecam``: ``relevancecam_weighting`` (absent:
                                    ``"spatial"``, the schema's default)
    ``fgsmxai``                     ``gradcam``: ``gradcam_layer`` (null: ``model``'s own
                                    ``gradcam_layer``, else its last conv block's output);
                                    ``smoothgrad``, ``lime``: their sub-sections
                                    (``lime.images_per_call`` is the loop's batch size)
    ``exiaa``                       ``ig``, ``deepliftshap``: their sub-sections
    ==============================  ============================================================

    Keys a method does not know are ignored, so any section can be passed for any method.
    """
    return _lookup(name).settings_kwargs(settings, model)


def explainer_from_settings(name: str, model: nn.Module, settings: dict | None = None,
                            **overrides) -> Explainer:
    """``make_explainer(name, model, **explainer_kwargs(name, settings, model), **overrides)``."""
    return make_explainer(name, model, **{**explainer_kwargs(name, settings, model), **overrides})
