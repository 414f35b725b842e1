"""Differentiable explainers: Grad, Grad-CAM, Relevance-CAM (CFN paper) and CAM (AdvEdge).

One call shape for all of them, Captum-like::

    expl = GradCAM(model, layer="layer3.2.bn2")         # layer: a module name; default per arch
    maps = expl(x, target=None, create_graph=False)     # x: (N, 3, H, W) in [0, 1]
    expl.last_logits                                    # logits of the same forward pass

``target`` is ``None`` (explain the predicted, argmax, class: REFERENCE.md, CFN, "explained
class"), an int, or a LongTensor of shape (N,). The maps are *raw* (not normalised), except
CAM, which is min-max normalised per image as AdvEdge/ADV2 use it:

=================  =====================================================  ==============
name               map                                                    shape
=================  =====================================================  ==============
``grad``           ``|d logit_t / d x_norm|`` (normalised input)          (N, 3, H, W)
``gradcam``        ReLU(sum_k mean_hw(d logit_t / d A_k) A_k), upsampled  (N, 1, H, W)
``relevancecam``   ReLU(sum_k R_k A_k), R: CLRP + LRP z+ (see the class)  (N, 1, H, W)
``cam``            minmax(sum_k w_{t,k} F_k), upsampled                   (N, 1, H, W)
=================  =====================================================  ==============

Uses:

* explanation-aware backdoor fine-tuning (CFN paper's attacks): the loss is a function of the
  map and is backpropagated to the weights. Call with ``create_graph=True``; Grad and Grad-CAM
  maps are first derivatives, so this needs second derivatives of the activations, which are
  zero for ReLU: fine-tuning swaps in Softplus(beta=8) (``xaisec.models.set_activation``).
* evaluation: ``create_graph=False`` (the default) returns detached maps and logits; the call
  works under ``torch.no_grad()`` too (gradients are enabled inside).
* AdvEdge/ADV2 attacks: loss on the map, backpropagated to the *input*: pass an ``x`` that
  requires grad and ``create_graph=True``. For Grad they replace ReLU's backward by a smooth
  surrogate: :class:`SmoothReLU`, installed with :func:`use_smooth_relu`.

Implementation rules: forward hooks are registered inside a context manager and always
removed (also on exceptions); everything is batched; the device comes from the inputs; the
model's train/eval mode is never changed (the caller decides; BatchNorm in train mode or the
CFN defense couple the samples of a batch, and the maps are then the gradients of the *sum* of
the target logits, as in Captum). Layers are addressed by name, so defended copies from
:func:`xaisec.defenses.apply_defense` (names kept) and ``nobn`` models (``layer3.2.bn2`` an
``nn.Identity``) work unchanged.

This module imports nothing from :mod:`xaisec.models`, so ``models`` may import
:class:`SmoothReLU` from here without an import cycle.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Explainer",
    "Gradient",
    "GradCAM",
    "RelevanceCAM",
    "CAM",
    "EXPLAINERS",
    "make_explainer",
    "default_layer",
    "SmoothReLU",
    "smooth_relu",
    "use_smooth_relu",
    "capture",
    "normalize_zscore_channelmax",
    "normalize_max",
    "minmax",
]


# --------------------------------------------------------------------------------------------
# Smoothed ReLU (AdvEdge / ADV2)
# --------------------------------------------------------------------------------------------


class _SmoothReLUFunction(torch.autograd.Function):
    """relu(z) forward; backward ``g * h(z)`` with AdvEdge's smoothed derivative (eq. in
    Section III-C of the AdvEdge paper; REFERENCE.md, AdvEdge, "ReLU smoothing")::

        h(z) = 1 + z / sqrt(z^2 + tau)   for z <  0
        h(z) =     z / sqrt(z^2 + tau)   for z >= 0

    The backward is written with differentiable torch operations on the saved input, so it
    has its own derivative (double backward): ``d h / d z = tau / (z^2 + tau)^(3/2)`` on both
    sides of 0, non-zero, unlike ReLU's. (h jumps from 1 to 0 at z = 0, as in the formula.)
    """

    @staticmethod
    def forward(ctx, z: Tensor, tau: float) -> Tensor:
        ctx.save_for_backward(z)
        ctx.tau = tau
        return z.clamp_min(0)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (z,) = ctx.saved_tensors
        s = z / torch.sqrt(z * z + ctx.tau)
        h = torch.where(z < 0, 1 + s, s)
        return grad_out * h, None


def smooth_relu(z: Tensor, tau: float = 1e-4) -> Tensor:
    """Functional form of :class:`SmoothReLU`."""
    return _SmoothReLUFunction.apply(z, tau)


class SmoothReLU(nn.Module):
    """ReLU whose backward is AdvEdge's smoothed derivative (see :func:`smooth_relu`).

    The forward value is exactly ``relu(z)``; only gradients differ (by at most
    ``tau / (2 z^2)`` away from 0), and second derivatives are non-zero, which the
    interpretation-aware attacks on Grad need. ``tau`` = 1e-4 (REFERENCE.md, AdvEdge).
    """

    def __init__(self, tau: float = 1e-4):
        super().__init__()
        self.tau = float(tau)

    def forward(self, z: Tensor) -> Tensor:
        return smooth_relu(z, self.tau)

    def extra_repr(self) -> str:
        return f"tau={self.tau}"


def use_smooth_relu(model: nn.Module, tau: float = 1e-4) -> nn.Module:
    """Replace every activation module (ReLU, Softplus or SmoothReLU) of ``model`` in place by
    :class:`SmoothReLU` (same attribute names), and return the model.

    Functional ``F.relu`` calls inside ``forward`` methods are not reached; the project's
    models use activation modules only.
    """
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, (nn.ReLU, nn.Softplus, SmoothReLU)):
                setattr(module, child_name, SmoothReLU(tau))
    return model


# --------------------------------------------------------------------------------------------
# Hooks
# --------------------------------------------------------------------------------------------


def _get_module(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise ValueError(
            f"model {type(model).__name__} has no module named {name!r}"
        ) from None


@contextmanager
def capture(
    model: nn.Module, outputs: tuple[str, ...] = (), inputs: tuple[str, ...] = ()
) -> Iterator[tuple[dict[str, Tensor], dict[str, Tensor]]]:
    """Record the outputs of the modules named in ``outputs`` and the (first) inputs of those
    named in ``inputs`` during the forward passes run inside the ``with`` block.

    Yields two dicts ``(outs, ins)`` keyed by module name (the last call wins if a module runs
    more than once). Every hook is removed on exit, also when the block raises.
    """
    outs: dict[str, Tensor] = {}
    ins: dict[str, Tensor] = {}
    handles = []

    def save_output(name):
        def hook(module, args, output):
            outs[name] = output

        return hook

    def save_input(name):
        def hook(module, args):
            ins[name] = args[0]

        return hook

    try:
        for name in outputs:
            handles.append(_get_module(model, name).register_forward_hook(save_output(name)))
        for name in inputs:
            handles.append(_get_module(model, name).register_forward_pre_hook(save_input(name)))
        yield outs, ins
    finally:
        for h in handles:
            h.remove()


# --------------------------------------------------------------------------------------------
# Default layers
# --------------------------------------------------------------------------------------------

_LAYER_KINDS = ("gradcam", "cam", "classifier")


def default_layer(model: nn.Module, kind: str) -> str:
    """Default module name per architecture.

    ``gradcam`` (Grad-CAM and Relevance-CAM): ResNet-20 ``layer3.2.bn2`` (last block's second
    BatchNorm, before the residual add and the ReLU; REFERENCE.md, CFN); VGG-13 the last
    normalisation module before the final max-pool. ``cam``: the last conv block's output,
    ResNet-20 ``layer3`` (post-ReLU, the input of the global average pool); VGG-13 the last
    activation before the final max-pool. ``classifier``: the final linear layer.
    """
    if kind not in _LAYER_KINDS:
        raise ValueError(f"unknown layer kind {kind!r}; known: {', '.join(_LAYER_KINDS)}")
    names = dict(model.named_modules())
    if "layer3.2.bn2" in names and "linear" in names:  # ResNet-20
        return {"gradcam": "layer3.2.bn2", "cam": "layer3", "classifier": "linear"}[kind]
    if "features_seq" in names and "classifier" in names:  # VGG-13
        if kind == "classifier":
            return "classifier"
        seq = names["features_seq"]
        pools = [i for i, m in enumerate(seq) if isinstance(m, nn.MaxPool2d)]
        last = pools[-1] if pools else len(seq)
        # conv, norm, activation, [max-pool]
        return f"features_seq.{last - 2}" if kind == "gradcam" else f"features_seq.{last - 1}"
    raise ValueError(
        f"no default {kind} layer for {type(model).__name__}; pass the layer's name"
    )


# --------------------------------------------------------------------------------------------
# Base class
# --------------------------------------------------------------------------------------------


def _resolve_target(target, logits: Tensor) -> Tensor:
    n, classes = logits.shape
    if target is None:
        return logits.detach().argmax(1)
    t = torch.as_tensor(target, device=logits.device)
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"target must be integer class indices, got dtype {t.dtype}")
    t = t.long()
    if t.dim() == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise ValueError(f"target must have shape ({n},), got {tuple(t.shape)}")
    if n and (int(t.min()) < 0 or int(t.max()) >= classes):
        raise ValueError(f"target out of range [0, {classes}): {t.tolist()}")
    return t


def _recorded(store: dict[str, Tensor], name: str) -> Tensor:
    try:
        return store[name]
    except KeyError:
        raise RuntimeError(f"module {name!r} did not run in the model's forward pass") from None


def _upsample(maps: Tensor, size) -> Tensor:
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)


class Explainer:
    """Base class: ``explainer(x, target=None, create_graph=False) -> maps``.

    Subclasses implement :meth:`_explain`, which runs the forward pass itself (inside
    :func:`capture`) and returns ``(maps, logits, target)``. The base class enables gradients, checks
    the input, resolves the target, detaches unless ``create_graph`` and stores
    :attr:`last_logits` and :attr:`last_target`.
    """

    name: str = ""
    map_channels: int = 1

    def __init__(self, model: nn.Module):
        self.model = model
        self.last_logits: Tensor | None = None
        self.last_target: Tensor | None = None

    def __call__(self, x: Tensor, target=None, create_graph: bool = False) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point():
            raise ValueError("x must be a floating-point tensor of shape (N, C, H, W)")
        with torch.enable_grad():
            maps, logits, t = self._explain(x, target, create_graph)
        if not create_graph:
            maps, logits = maps.detach(), logits.detach()
        self.last_logits, self.last_target = logits, t
        return maps

    #: Captum-style alias.
    def attribute(self, x: Tensor, target=None, create_graph: bool = False) -> Tensor:
        return self(x, target=target, create_graph=create_graph)

    def _explain(self, x: Tensor, target, create_graph: bool):
        raise NotImplementedError

    @staticmethod
    def _input_with_grad(x: Tensor) -> Tensor:
        """``x`` itself if it is already part of a graph (the caller backpropagates to it),
        else a detached copy that requires grad (so the graph exists even for frozen
        weights)."""
        return x if x.requires_grad else x.detach().requires_grad_(True)

    def __repr__(self) -> str:
        extra = getattr(self, "layer", None)
        return f"{type(self).__name__}({type(self.model).__name__}" + (
            f", layer={extra!r})" if extra else ")"
        )


def _target_score(logits: Tensor, t: Tensor) -> Tensor:
    """Sum over the batch of each sample's target logit (its gradient w.r.t. a per-sample
    tensor is that sample's gradient when the samples are independent)."""
    return logits.gather(1, t[:, None]).sum()


# --------------------------------------------------------------------------------------------
# Explainers
# --------------------------------------------------------------------------------------------


class Gradient(Explainer):
    """Grad (Simonyan et al. 2014): ``|d logit_t / d x_norm|``, shape (N, 3, H, W).

    CFN paper's code (REFERENCE.md, CFN, "Grad"): the absolute gradient w.r.t. the
    *normalised* input ``x_norm = (x - mean) / std``, read directly as the gradient w.r.t. the
    output of ``model.normalize`` (a forward hook), which equals ``std * d logit / d x`` per
    channel. ``wrt="input"`` gives ``|d logit_t / d x|`` w.r.t. the [0, 1] input instead (the
    AdvEdge/ADV2 pixel-space gradient, before their channel-max, 4x4 pooling and min-max).
    """

    name = "grad"
    map_channels = 3

    def __init__(
        self, model: nn.Module, wrt: str = "normalized", normalize_module: str = "normalize"
    ):
        super().__init__(model)
        if wrt not in ("normalized", "input"):
            raise ValueError(f"wrt must be 'normalized' or 'input', got {wrt!r}")
        self.wrt = wrt
        self.normalize_module = normalize_module
        if wrt == "normalized":
            _get_module(model, normalize_module)

    def _explain(self, x, target, create_graph):
        x = self._input_with_grad(x)
        names = (self.normalize_module,) if self.wrt == "normalized" else ()
        with capture(self.model, outputs=names) as (outs, _):
            logits = self.model(x)
            t = _resolve_target(target, logits)
            wrt = _recorded(outs, self.normalize_module) if self.wrt == "normalized" else x
            (grad,) = torch.autograd.grad(
                _target_score(logits, t), wrt, create_graph=create_graph
            )
        return grad.abs(), logits, t


class GradCAM(Explainer):
    """Grad-CAM (Selvaraju et al. 2017), shape (N, 1, H, W).

    ``A`` = output of ``layer`` (default ResNet-20 ``layer3.2.bn2``: 64x8x8, the last block's
    second BatchNorm, before the residual add and the ReLU; REFERENCE.md, CFN), ``a_k =
    mean_hw d logit_t / d A_k``, map = ReLU(sum_k a_k A_k), bilinearly upsampled
    (``align_corners=False``) to the input size (``upsample=False`` keeps the layer's size).
    With ``create_graph=True`` the channel weights stay in the graph (second order).
    """

    name = "gradcam"

    def __init__(self, model: nn.Module, layer: str | None = None, upsample: bool = True):
        super().__init__(model)
        self.layer = layer or default_layer(model, "gradcam")
        _get_module(model, self.layer)
        self.upsample = upsample

    def _explain(self, x, target, create_graph):
        x = self._input_with_grad(x)
        with capture(self.model, outputs=(self.layer,)) as (outs, _):
            logits = self.model(x)
            t = _resolve_target(target, logits)
            acts = _recorded(outs, self.layer)
            (grads,) = torch.autograd.grad(
                _target_score(logits, t), acts, create_graph=create_graph
            )
        if not create_graph:
            acts = acts.detach()
        weights = grads.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * acts).sum(dim=1, keepdim=True))
        if self.upsample:
            cam = _upsample(cam, x.shape[-2:])
        return cam, logits, t


class RelevanceCAM(Explainer):
    """Relevance-CAM (Lee et al., "Relevance-CAM: Your Model Already Knows Where to Look",
    CVPR 2021) as the CFN paper's attacks compute it (REFERENCE.md, CFN, "Relevance-CAM"):
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
        self.layer = layer or default_layer(model, "gradcam")
        self.classifier = classifier or default_layer(model, "classifier")
        _get_module(model, self.layer)
        if not isinstance(_get_module(model, self.classifier), nn.Linear):
            raise ValueError(f"{self.classifier!r} is not an nn.Linear")
        self.weighting = weighting
        self.feature_layer = None
        if weighting == "spatial":
            self.feature_layer = feature_layer or default_layer(model, "cam")
            _get_module(model, self.feature_layer)
        self.upsample = upsample
        self.eps = eps

    def _explain(self, x, target, create_graph):
        linear = _get_module(self.model, self.classifier)
        outputs = (self.layer,) + ((self.feature_layer,) if self.feature_layer else ())
        with capture(self.model, outputs=outputs, inputs=(self.classifier,)) as (outs, ins):
            logits = self.model(x)
        t = _resolve_target(target, logits)
        acts, a = _recorded(outs, self.layer), _recorded(ins, self.classifier)
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
            feats = _recorded(outs, self.feature_layer)
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
            cam = _upsample(cam, x.shape[-2:])
        return cam, logits, t


class CAM(Explainer):
    """Class activation map (Zhou et al. 2016) as used by ADV2/AdvEdge (REFERENCE.md,
    AdvEdge, "CAM attack"), shape (N, 1, H, W).

    map = sum_k W_{t,k} F_k with ``W`` the final linear layer's weights and ``F`` the last
    conv block's output (ResNet-20: ``layer3``, post-ReLU, 64x8x8), bilinearly upsampled to
    the input size and then min-max normalised per image (``normalize=False`` gives the raw
    map). Upsampling first keeps the normalised map exactly in [0, 1] (bilinear
    interpolation is affine-equivariant, so the order only matters for the exact extremes).
    """

    name = "cam"

    def __init__(
        self,
        model: nn.Module,
        layer: str | None = None,
        classifier: str | None = None,
        upsample: bool = True,
        normalize: bool = True,
    ):
        super().__init__(model)
        self.layer = layer or default_layer(model, "cam")
        self.classifier = classifier or default_layer(model, "classifier")
        _get_module(model, self.layer)
        if not isinstance(_get_module(model, self.classifier), nn.Linear):
            raise ValueError(f"{self.classifier!r} is not an nn.Linear")
        self.upsample = upsample
        self.normalize = normalize

    def _explain(self, x, target, create_graph):
        linear = _get_module(self.model, self.classifier)
        with capture(self.model, outputs=(self.layer,)) as (outs, _):
            logits = self.model(x)
        t = _resolve_target(target, logits)
        feats = _recorded(outs, self.layer)
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
            cam = _upsample(cam, x.shape[-2:])
        if self.normalize:
            cam = minmax(cam)
        return cam, logits, t


EXPLAINERS: dict[str, type[Explainer]] = {
    "grad": Gradient,
    "gradcam": GradCAM,
    "relevancecam": RelevanceCAM,
    "cam": CAM,
}


def from_registry(registry: dict, name: str, model: nn.Module, kind: str = "explainer", **kwargs):
    """Build ``registry[name](model, **kwargs)``; an unknown name is a ValueError listing the
    known ones (shared by every explainer family)."""
    try:
        cls = registry[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; known: {', '.join(registry)}") from None
    return cls(model, **kwargs)


def make_explainer(name: str, model: nn.Module, **kwargs) -> Explainer:
    """Build the explainer registered as ``name`` (see :data:`EXPLAINERS`)."""
    return from_registry(EXPLAINERS, name, model, **kwargs)


# --------------------------------------------------------------------------------------------
# Normalisation of maps
# --------------------------------------------------------------------------------------------


def _check_maps(maps: Tensor) -> None:
    if not isinstance(maps, Tensor) or maps.dim() != 4:
        raise ValueError("maps must be a tensor of shape (N, C, H, W)")


def normalize_zscore_channelmax(maps: Tensor, eps: float = 1e-5, unbiased: bool = True) -> Tensor:
    """CFN training-loss normalisation (REFERENCE.md, CFN, "explanation normalisation"): per
    sample and channel, ``(m - mean_hw) / sqrt(var_hw + eps)``, then the maximum over
    channels. (N, C, H, W) -> (N, 1, H, W). The variance is the unbiased one (``torch.var``'s
    default, as the authors' code computes it); ``unbiased=False`` gives the biased one.
    Differentiable (max passes the gradient to the arg-max channel)."""
    _check_maps(maps)
    mean = maps.mean(dim=(2, 3), keepdim=True)
    var = maps.var(dim=(2, 3), keepdim=True, unbiased=unbiased)
    z = (maps - mean) / torch.sqrt(var + eps)
    return z.amax(dim=1, keepdim=True)


def normalize_max(maps: Tensor) -> Tensor:
    """CFN reporting normalisation (REFERENCE.md, CFN, "reported explanation error"): maximum
    over channels, then each map divided by its own maximum. A map whose maximum is <= 0 is
    returned unscaled. (N, C, H, W) -> (N, 1, H, W)."""
    _check_maps(maps)
    m = maps.amax(dim=1, keepdim=True)
    top = m.amax(dim=(2, 3), keepdim=True)
    return m / torch.where(top > 0, top, torch.ones_like(top))


def minmax(maps: Tensor) -> Tensor:
    """Per-image min-max scaling over all of (C, H, W) to [0, 1]; a constant map becomes 0.
    Shape kept."""
    _check_maps(maps)
    flat = maps.flatten(1)
    lo = flat.amin(1).view(-1, 1, 1, 1)
    hi = flat.amax(1).view(-1, 1, 1, 1)
    rng = hi - lo
    return (maps - lo) / torch.where(rng > 0, rng, torch.ones_like(rng))
