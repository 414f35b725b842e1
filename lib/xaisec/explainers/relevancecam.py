"""Relevance-CAM (Lee et al., CVPR 2021) as the CFN paper's attacks compute it,
differentiable."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from xaisec.explainers.base import Explainer, Explanation, resolve_target
from xaisec.explainers.hooks import (capture, default_layer, get_module, layer_and_classifier,
                                     recorded, upsample)

__all__ = ["RelevanceCAM"]


class RelevanceCAM(Explainer):
    """Relevance-CAM (Lee et al., "Relevance-CAM: Your Model Already Knows Where to Look",
    CVPR 2021) as the CFN paper's attacks compute it (docs/settings.md, CFN, "Relevance-CAM"):
    relevance propagated through the final linear layer and the average pool only.
    Shape (N, 1, H, W).

    Notation: ``z = W a + b`` the final linear layer (``W``: C x K), ``a`` its input, the
    globally average-pooled final feature map ``F`` (K x h x w; ResNet-20: ``layer3``'s
    output), ``A`` the activation of ``layer`` (default ``layer3.2.bn2``), C classes, ``t`` the
    explained class.

    1. Contrastive start relevance at the logits (CLRP, as in Relevance-CAM)::

           R_j = 1            if j == t
           R_j = -1 / C       otherwise

    2. LRP alpha1-beta0 (z+) rule through the linear layer, bias ignored::

           z+_kj = max(a_k W_jk, 0)
           R_k   = sum_j  z+_kj / (sum_k' z+_k'j + eps) * R_j          (eps = 1e-9)

       (linear in R, so this equals propagating the one-hot and the (1 - one-hot) / C parts
       separately and subtracting them.)

    3. z+ rule through the global average pool ``a_k = mean_hw F_khw``::

           R_khw = F+_khw / (sum_hw' F+_khw' + eps) * R_k

    4. Map, two variants (``weighting``):

       * ``"channel"`` (default; the Relevance-CAM paper, eq. for alpha_k^c):
         ``alpha_k = sum_hw R_khw``, ``map = ReLU(sum_k alpha_k A_k)``. Relevance is conserved
         per channel through the pool (F >= 0 after ReLU/Softplus), so ``alpha_k = R_k`` up to
         the eps (exactly 0 for a channel with F = 0, whose R_k is 0 already); the pool step
         therefore needs no computation and F is not read.
       * ``"spatial"`` (the CFN attack authors' code, intellisec/xai-backdoors and
         Mak-Ta-Reque/mcsx ``relevancecam``): no spatial pooling of the relevance,
         ``map = ReLU(sum_k R_khw A_khw)`` (elementwise product with the relevance map, summed
         over channels). Needs F and A on the same grid (ResNet-20: both 8x8).

       Then bilinear upsampling (``align_corners=False``) to the input size.

    Connecting the two tensors: relevance is propagated only to the *final* feature map ``F``
    (ResNet-20: ``layer3``'s output, post-residual and post-ReLU, what the pool sees), while
    ``A`` is read at ``layer3.2.bn2`` (pre-residual, pre-ReLU). Both have the same K = 64
    channels and 8x8 grid; relevance is *not* propagated through the residual block. In the
    channel variant only the spatially summed relevance (one weight per channel, like
    Grad-CAM's gradient weights) multiplies ``A``; in the spatial variant the relevance map of
    F multiplies A position by position.

    The computation is an ordinary differentiable function of ``a``, ``W``, ``F`` and ``A``
    (no gradients inside), so ``create_graph=True`` only keeps the graph. For VGG-13 the
    "pool" is the final 2x2 max-pool to 1x1: the channel variant uses the same per-channel
    weights; the spatial variant (``feature_layer`` default: the last activation before that
    max-pool) spreads R_k over the 2x2 grid in proportion to F+, as an average pool would,
    which is an approximation of LRP through a max-pool.
    """

    name = "relevancecam"
    differentiable = True
    WEIGHTINGS = ("channel", "spatial")

    def __init__(
        self,
        model: nn.Module,
        layer: str | None = None,
        classifier: str | None = None,
        upsample: bool = True,
        eps: float = 1e-9,
        weighting: str = "channel",
        feature_layer: str | None = None,
    ):
        super().__init__(model)
        if weighting not in self.WEIGHTINGS:
            raise ValueError(
                f"unknown weighting {weighting!r}; known: {', '.join(self.WEIGHTINGS)}"
            )
        self.layer, self.classifier = layer_and_classifier(model, layer, classifier, "gradcam")
        self.weighting = weighting
        self.feature_layer = None
        if weighting == "spatial":
            self.feature_layer = feature_layer or default_layer(model, "cam")
            get_module(model, self.feature_layer)
        self.upsample = upsample
        self.eps = eps

    @classmethod
    def settings_kwargs(cls, settings, model=None):
        """``xai.relevancecam_weighting``; absent (or no settings): the config schema's default,
        ``"spatial"`` (the CFN authors' code), not the constructor's ``"channel"``."""
        return {"weighting": (settings or {}).get("relevancecam_weighting", "spatial")}

    def _attribute(self, x, target, create_graph):
        linear = get_module(self.model, self.classifier)
        outputs = (self.layer,) + ((self.feature_layer,) if self.feature_layer else ())
        with capture(self.model, outputs=outputs, inputs=(self.classifier,)) as (outs, ins):
            logits = self.model(x)
        t = resolve_target(target, logits)
        acts, a = recorded(outs, self.layer), recorded(ins, self.classifier)
        if acts.shape[1] != a.shape[1]:
            raise ValueError(
                f"layer {self.layer!r} has {acts.shape[1]} channels but the classifier has "
                f"{a.shape[1]} inputs"
            )
        weight = linear.weight
        if not create_graph:
            acts, a, weight = acts.detach(), a.detach(), weight.detach()
        classes = logits.shape[1]
        onehot = F.one_hot(t, classes).to(a.dtype)
        r_out = onehot - (1 - onehot) / classes  # (N, C)
        z = (a[:, None, :] * weight[None]).clamp_min(0)  # (N, C, K): z+_kj
        r_k = (z / (z.sum(-1, keepdim=True) + self.eps) * r_out[:, :, None]).sum(1)  # (N, K)
        if self.weighting == "channel":
            cam = (r_k[:, :, None, None] * acts).sum(dim=1, keepdim=True)
        else:
            feats = recorded(outs, self.feature_layer)
            if not create_graph:
                feats = feats.detach()
            if feats.shape[1:] != acts.shape[1:]:
                raise ValueError(
                    f"spatial Relevance-CAM needs {self.feature_layer!r} "
                    f"{tuple(feats.shape[1:])} and {self.layer!r} {tuple(acts.shape[1:])} "
                    "on the same grid"
                )
            fp = feats.clamp_min(0)
            r_map = fp / (fp.sum(dim=(2, 3), keepdim=True) + self.eps) * r_k[:, :, None, None]
            cam = (r_map * acts).sum(dim=1, keepdim=True)
        cam = F.relu(cam)
        if self.upsample:
            cam = upsample(cam, x.shape[-2:])
        return Explanation(cam, logits, t)
