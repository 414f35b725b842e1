"""The CAM family, differentiable: Grad-CAM (CFN paper, FGSM-XAI) and CAM (AdvEdge/ADV2).

=================  =====================================================  ==============
name               map                                                    shape
=================  =====================================================  ==============
``gradcam``        ReLU(sum_k mean_hw(d logit_t / d A_k) A_k), upsampled  (N, 1, H, W)
``cam``            minmax(sum_k w_{t,k} F_k), upsampled                   (N, 1, H, W)
=================  =====================================================  ==============
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xaisec.explainers.base import Explainer, Explanation, resolve_target, target_score
from xaisec.explainers.hooks import (capture, default_layer, get_module, layer_and_classifier,
                                     recorded, upsample)
from xaisec.metrics.maps import minmax

__all__ = ["CAM", "GradCAM"]


class GradCAM(Explainer):
    """Grad-CAM (Selvaraju et al. 2017), shape (N, 1, H, W), raw (not normalised).

    ``A`` = output of ``layer`` (default ResNet-20 ``layer3.2.bn2``: 64x8x8, the last block's
    second BatchNorm, before the residual add and the ReLU; docs/settings.md, CFN), ``a_k =
    mean_hw d logit_t / d A_k``, map = ReLU(sum_k a_k A_k), bilinearly upsampled
    (``align_corners=False``) to the input size (``upsample=False`` keeps the layer's size).
    With ``create_graph=True`` the channel weights stay in the graph (second order).

    Config: ``fgsmxai.gradcam_layer`` (null: the last conv block's output, ResNet-20 ``layer3``,
    or an ImageNet model's ``gradcam_layer``; see :meth:`settings_kwargs`).
    """

    name = "gradcam"
    differentiable = True

    def __init__(self, model: nn.Module, layer: str | None = None, upsample: bool = True):
        super().__init__(model)
        self.layer = layer or default_layer(model, "gradcam")
        get_module(model, self.layer)
        self.upsample = upsample

    @classmethod
    def settings_kwargs(cls, settings, model=None):
        """FGSM-XAI's ``gradcam_layer`` ("the last conv layer"): a module name, or null for
        the model's own ``gradcam_layer`` (ImageNet models) or else its last conv block's
        output (:func:`default_layer` kind ``cam``). Without the key: the CFN default."""
        settings = settings or {}
        if "gradcam_layer" not in settings:
            return {}
        layer = settings["gradcam_layer"]
        if layer is None and model is not None:
            layer = getattr(model, "gradcam_layer", None) or default_layer(model, "cam")
        return {"layer": layer}

    def _attribute(self, x, target, create_graph):
        x = self._input_with_grad(x)
        with capture(self.model, outputs=(self.layer,)) as (outs, _):
            logits = self.model(x)
            t = resolve_target(target, logits)
            acts = recorded(outs, self.layer)
            (grads,) = torch.autograd.grad(
                target_score(logits, t), acts, create_graph=create_graph
            )
        if not create_graph:
            acts = acts.detach()
        weights = grads.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * acts).sum(dim=1, keepdim=True))
        if self.upsample:
            cam = upsample(cam, x.shape[-2:])
        return Explanation(cam, logits, t)


class CAM(Explainer):
    """Class activation map (Zhou et al. 2016) as used by ADV2/AdvEdge (docs/settings.md,
    AdvEdge, "CAM attack"), shape (N, 1, H, W).

    map = sum_k W_{t,k} F_k with ``W`` the final linear layer's weights and ``F`` the last
    conv block's output (ResNet-20: ``layer3``, post-ReLU, 64x8x8), bilinearly upsampled to
    the input size and then min-max normalised per image (``normalize=False`` gives the raw
    map). Upsampling first keeps the normalised map exactly in [0, 1] (bilinear
    interpolation is affine-equivariant, so the order only matters for the exact extremes).
    """

    name = "cam"
    differentiable = True

    def __init__(
        self,
        model: nn.Module,
        layer: str | None = None,
        classifier: str | None = None,
        upsample: bool = True,
        normalize: bool = True,
    ):
        super().__init__(model)
        self.layer, self.classifier = layer_and_classifier(model, layer, classifier, "cam")
        self.upsample = upsample
        self.normalize = normalize

    def _attribute(self, x, target, create_graph):
        linear = get_module(self.model, self.classifier)
        with capture(self.model, outputs=(self.layer,)) as (outs, _):
            logits = self.model(x)
        t = resolve_target(target, logits)
        feats = recorded(outs, self.layer)
        if feats.shape[1] != linear.in_features:
            raise ValueError(
                f"layer {self.layer!r} has {feats.shape[1]} channels but the classifier has "
                f"{linear.in_features} inputs"
            )
        weight = linear.weight
        if not create_graph:
            feats, weight = feats.detach(), weight.detach()
        cam = (weight[t][:, :, None, None] * feats).sum(dim=1, keepdim=True)
        if self.upsample:
            cam = upsample(cam, x.shape[-2:])
        if self.normalize:
            cam = minmax(cam)
        return Explanation(cam, logits, t)
