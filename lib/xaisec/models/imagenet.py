"""ImageNet classifiers (torchvision) for the FGSM-XAI, EXIAA and AdvEdge papers; the images are
read by :mod:`xaisec.data.imagenet`.

Models (:func:`build_imagenet_model`)::

    model = build_imagenet_model("resnet18", weights="IMAGENET1K_V1")   # or a local .pth file
    logits = model(x)                 # x: (N, 3, H, W) in [0, 1], any H, W  ->  (N, 1000)
    GradCAM(model, layer=model.gradcam_layer)                          # xaisec.explainers
    make_explainer("deepliftshap", model)                              # xaisec.explainers

=====================  =============================================================  =========
name                   paper                                                          Grad-CAM
=====================  =============================================================  =========
``resnet18``           EXIAA (pretrained ResNet-18)                                   ``net.layer4``
``resnet50``           AdvEdge, Section V-A (papers/advedge.txt)                      ``net.layer4``
``densenet169``        AdvEdge, Section V-A; head rewritten with modules              ``net.relu``
                       (:class:`DenseNetForCAM`)
``vgg16``              AdvEdge, Section V-A; no CAM (three FC layers, not GAP +       ``net.features.29``
                       one linear)
``inception_v3``       AdvEdge, Section V-A; 299x299, no auxiliary classifier,        ``net.Mixed_7c``
                       inputs normalised to [-1, 1] (:func:`build_imagenet_model`)
``vit_b_16``           EXIAA (pretrained ViT-B/16)                                    none
``efficientnet_v2_s``  FGSM-XAI. The paper uses Keras' EfficientNetV2-**B0**;         ``net.features.7``
                       torchvision has no B0 variant of V2, V2-S is its smallest
                       (21.5M parameters against B0's 7.2M; torchvision evaluates
                       it at 384x384, the paper's pipeline at 224x224, which is
                       kept here: top-1 at 224 is below torchvision's 384 figure;
                       not measured here, there are no weights offline)
``efficientnet_b0``    alternative for FGSM-XAI (EfficientNet V1-B0, 224x224)         ``net.features.8``
=====================  =============================================================  =========

Grad-CAM layers: ResNet-18's ``layer4`` output (the last block after its residual add and ReLU,
512x7x7 at 224: the "last convolutional layer" of Selvaraju et al. and pytorch-grad-cam's
``model.layer4[-1]``); EfficientNet's last ``features`` block, the 1x1 head convolution + BN +
SiLU to 1280 channels (7x7), the counterpart of Keras' ``top_activation``, the last
convolutional layer's activation that Keras Grad-CAM code usually reads (the authors' notebook
was not checked). With random weights nothing about a map's quality can be judged; these are
the standard choices. ViT has no convolutional feature map: Grad-CAM is not defined
(``gradcam_layer`` is None).

CAM (AdvEdge/ADV2, :class:`xaisec.explainers.CAM`) needs the map that is globally average
pooled and then one linear layer: ResNets' ``net.layer4`` and ``net.fc``; DenseNet's post-ReLU
features ``net.relu`` and ``net.classifier``; Inception-v3's ``net.Mixed_7c`` (2048x8x8 at 299)
and ``net.fc`` (the dropout between is the identity in eval mode); EfficientNet's last
``features`` block and ``net.classifier.1``. VGG-16 pools to 7x7 and has three fully connected
layers: CAM is not defined there, and asking for its layers raises a ValueError saying so
(:meth:`ImageNetClassifier.explainer_layer`); its Grad-CAM layer is the last convolution's
ReLU, ``net.features.29`` (512x14x14 at 224, before the last max-pool: the "last
convolutional layer" of Selvaraju et al.). The layers are found by
:func:`xaisec.explainers.hooks.default_layer` through ``explainer_layer``.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xaisec.catalog import IMAGENET_ARCHS as ARCHS  # one list of the ImageNet networks
from xaisec.models.activations import plain_relu
from xaisec.models.normalize import IMAGENET_MEAN, IMAGENET_STD, Normalize

__all__ = [
    "ARCHS",
    "INPUT_SIZE",
    "NUM_CLASSES",
    "DeepLiftBasicBlock",
    "DeepLiftBottleneck",
    "DeepLiftMaxPool2d",
    "DenseNetForCAM",
    "ImageNetClassifier",
    "build_imagenet_model",
    "deeplift_problems",
    "imagenet_categories",
    "input_size",
    "load_state_dict_file",
    "make_deeplift_safe",
    "resolve_weights",
]

#: Input size of the models here but Inception-v3 (:func:`input_size`; FGSM-XAI: 224x224;
#: EXIAA: the torchvision default; AdvEdge: 224x224 crops, Section V-A), and the size the
#: ImageNet images are prepared at (:mod:`xaisec.data.imagenet`).
INPUT_SIZE = 224
#: Architectures whose input size is not :data:`INPUT_SIZE`: Inception-v3 is built for 299x299
#: (Szegedy et al. 2016; torchvision's weights are evaluated at 299).
_INPUT_SIZES = {"inception_v3": 299}
#: Smallest input an architecture accepts (Inception-v3's stem and grid reductions need 75 px).
_MIN_INPUT_SIZES = {"inception_v3": 75}
#: Inception-v3's weights (ported from TensorFlow) expect pixels scaled to [-1, 1].
_INCEPTION_MEAN = _INCEPTION_STD = (0.5, 0.5, 0.5)
NUM_CLASSES = 1000
_STATE_DICT_SUFFIXES = (".pth", ".pt")


def input_size(arch: str) -> int:
    """The input side ``arch`` is built for (:data:`INPUT_SIZE`, 224, but Inception-v3: 299);
    an :class:`ImageNetClassifier` resizes other inputs to it. ValueError for an unknown arch."""
    if arch not in ARCHS:
        raise ValueError(f"unknown ImageNet model {arch!r}; known: {', '.join(ARCHS)}")
    return _INPUT_SIZES.get(arch, INPUT_SIZE)


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


class ImageNetClassifier(nn.Module):
    """A torchvision ImageNet network behind the project's input convention.

    ``forward(x)``: ``x`` (N, 3, H, W) in [0, 1] at any size -> logits (N, 1000). Inputs that
    are not ``input_size`` x ``input_size`` are resized bilinearly (``align_corners=False``;
    antialiased when shrinking; the aspect ratio is not kept, so feed square crops such as
    :func:`read_imagenet_folder` makes), then normalised with the ImageNet mean/std
    (``self.normalize``, as in :mod:`xaisec.models`), then run through ``self.net``.

    Attributes: ``net`` (the torchvision model), ``arch``, ``input_size``, ``class_names``
    (the 1000 category names, or None for random weights), ``gradcam_layer`` (module name
    for :class:`xaisec.explainers.GradCAM`, None for ViT), ``cam_layer`` and
    ``classifier_layer`` (the globally pooled map and the one linear layer after it, for
    :class:`xaisec.explainers.CAM`; None where CAM is not defined, ``cam_unsupported`` then
    says why), ``weights`` (what was loaded).
    """

    def __init__(
        self,
        net: nn.Module,
        arch: str,
        input_size: int = INPUT_SIZE,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        class_names: Sequence[str] | None = None,
        gradcam_layer: str | None = None,
        weights: str | None = None,
    ):
        super().__init__()
        self.arch = arch
        self.input_size = int(input_size)
        self.normalize = Normalize(tuple(mean), tuple(std))
        self.net = net
        self.class_names = None if class_names is None else tuple(class_names)
        layers = _explainer_layers(arch, net)
        self.gradcam_layer = gradcam_layer or layers["gradcam"]
        self.cam_layer, self.classifier_layer = layers["cam"], layers["classifier"]
        self.cam_unsupported = layers["why"]
        self.weights = weights

    def explainer_layer(self, kind: str) -> str:
        """The module name of ``kind`` (``gradcam``, ``cam``, ``classifier``), read by
        :func:`xaisec.explainers.hooks.default_layer`; a ValueError saying why where the
        explainer is not defined for this architecture (CAM on VGG-16 and ViT, Grad-CAM on
        ViT)."""
        names = {"gradcam": self.gradcam_layer, "cam": self.cam_layer,
                 "classifier": self.classifier_layer}
        if kind not in names:
            raise ValueError(f"unknown layer kind {kind!r}; known: {', '.join(names)}")
        if names[kind] is None:
            method = "Grad-CAM" if kind == "gradcam" else "CAM"
            raise ValueError(f"{method} is not defined for torchvision {self.arch}: "
                             f"{self.cam_unsupported}")
        return names[kind]

    def resize(self, x: Tensor) -> Tensor:
        s = self.input_size
        h, w = x.shape[-2:]
        if (h, w) == (s, s):
            return x
        return F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False,
                             antialias=bool(h > s or w > s))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images (N, 3, H, W), got shape {tuple(x.shape)}")
        return self.net(self.normalize(self.resize(x)))

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, input_size={self.input_size}, weights={self.weights!r}"


def imagenet_categories() -> tuple[str, ...]:
    """The 1000 ImageNet-1k category names in label order (torchvision's weight metadata;
    no download)."""
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def _explainer_layers(arch: str, net: nn.Module) -> dict[str, str | None]:
    """{"gradcam", "cam", "classifier": module name or None, "why": why CAM is not defined}
    (see the module docstring)."""
    if arch.startswith("resnet"):
        return {"gradcam": "net.layer4", "cam": "net.layer4", "classifier": "net.fc",
                "why": None}
    if arch.startswith("efficientnet"):
        last = f"net.features.{len(net.features) - 1}"
        return {"gradcam": last, "cam": last, "classifier": "net.classifier.1", "why": None}
    if arch.startswith("densenet"):
        # torchvision's DenseNet ends its features with a BatchNorm (norm5) and applies the
        # ReLU functionally in forward; DenseNetForCAM makes that ReLU a module, whose output
        # is the map CAM weights (norm5's output is pre-ReLU and is not what is pooled)
        return {"gradcam": "net.relu", "cam": "net.relu", "classifier": "net.classifier",
                "why": None}
    if arch == "inception_v3":
        return {"gradcam": "net.Mixed_7c", "cam": "net.Mixed_7c", "classifier": "net.fc",
                "why": None}
    if arch.startswith("vgg"):
        relus = [i for i, m in enumerate(net.features) if isinstance(m, nn.ReLU)]
        return {"gradcam": f"net.features.{relus[-1]}", "cam": None, "classifier": None,
                "why": "CAM needs global average pooling followed by one linear layer, and "
                       "VGG's head is a 7x7 adaptive average pool followed by three fully "
                       "connected layers (net.classifier.0, .3, .6); explain it with grad "
                       "or gradcam instead"}
    return {"gradcam": None, "cam": None, "classifier": None,
            "why": f"{arch} has no convolutional feature map (CAM and Grad-CAM read one)"}


class DenseNetForCAM(nn.Module):
    """torchvision's ``DenseNet`` with its head written with modules: ``features`` ->
    ``relu`` (an ``nn.ReLU`` module, where torchvision calls ``F.relu(inplace=True)``) ->
    ``avgpool`` -> flatten -> ``classifier``. Same forward values, gradients and state-dict
    keys (``features.*``, ``classifier.*``); the post-ReLU map that is pooled is now a module's
    output, so CAM and Grad-CAM can read it (``net.relu``), and Captum's DeepLift sees the
    last ReLU."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.features = net.features
        self.relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = net.classifier

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.relu(self.features(x))), 1))


def _builder_kwargs(name: str) -> dict[str, Any]:
    """Constructor arguments beyond torchvision's defaults. Inception-v3: no auxiliary
    classifier (it only adds a training loss; in eval mode torchvision returns the main
    logits anyway, and ``aux_logits=False`` keeps the forward a plain tensor in train mode
    too); ``transform_input=False``, since :class:`ImageNetClassifier` normalises to [-1, 1]
    itself (see :func:`build_imagenet_model`); ``init_weights=False``: PyTorch's default layer
    initialisation for random weights, as the other networks here (torchvision's own, a
    truncated normal with std 0.1 for every convolution, drives random-weight logits to ~1e11
    in eval mode; pretrained weights replace either)."""
    if name == "inception_v3":
        return {"aux_logits": False, "transform_input": False, "init_weights": False}
    return {}


def _drop_unused(name: str, sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The state dict without the parameters of parts not built here (Inception-v3's auxiliary
    classifier, ``AuxLogits.*``, in torchvision's weights)."""
    if name == "inception_v3":
        return {k: v for k, v in sd.items() if not k.startswith("AuxLogits.")}
    return dict(sd)


def resolve_weights(arch: str, weights: Any):
    """The torchvision ``WeightsEnum`` member for ``weights``: a member itself, a member name
    of ``arch``'s enum (``"IMAGENET1K_V1"``, ``"DEFAULT"``) or a full name
    (``"ResNet18_Weights.IMAGENET1K_V1"``). ValueError listing the known names otherwise."""
    from torchvision.models import WeightsEnum, get_model_weights, get_weight

    enum = get_model_weights(arch)
    if isinstance(weights, WeightsEnum):
        if type(weights) is not enum:
            raise ValueError(f"weights {weights} are not weights of {arch} ({enum.__name__})")
        return weights
    name = str(weights)
    if "." in name:
        try:
            w = get_weight(name)
        except (ValueError, KeyError, AttributeError) as exc:
            raise ValueError(f"unknown torchvision weights {name!r}: {exc}") from None
        if type(w) is not enum:
            raise ValueError(f"weights {name} are not weights of {arch} ({enum.__name__})")
        return w
    if name == "DEFAULT":
        return enum.DEFAULT
    try:
        return enum[name]
    except KeyError:
        known = ", ".join(["DEFAULT", *(e.name for e in enum)])
        raise ValueError(
            f"unknown weights {name!r} for {arch}: expected one of {known}, or a path to a "
            f"state-dict file ({'/'.join(_STATE_DICT_SUFFIXES)})"
        ) from None


def _checkpoint_path(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _torchvision_state_dict(w, progress: bool) -> dict[str, Tensor]:
    """Load (downloading on first use into $TORCH_HOME/hub/checkpoints) ``w``'s state dict."""
    import http.client

    target = _checkpoint_path(w.url)
    try:
        return w.get_state_dict(progress=progress, check_hash=True, weights_only=True)
    except (OSError, RuntimeError, ValueError, http.client.HTTPException) as exc:
        raise RuntimeError(
            f"could not load the torchvision weights {w} from {w.url}: "
            f"{type(exc).__name__}: {exc}. Without network, download that file elsewhere and "
            f"put it at {target} ($TORCH_HOME/hub/checkpoints/{target.name}), or pass "
            "weights=<path to a local state-dict file (.pth/.pt)>"
        ) from exc


def load_state_dict_file(path: str | os.PathLike) -> dict[str, Tensor]:
    """A state dict from ``path`` (``torch.load(weights_only=True)``, on the CPU). A dict under
    the key ``state_dict`` or ``model`` is unwrapped; keys prefixed ``module.`` (DataParallel)
    or ``net.`` (an :class:`ImageNetClassifier`'s own state dict) are stripped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"state-dict file {path} not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"cannot read the state dict {path} (torch.load with "
                         f"weights_only=True): {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    sd = dict(obj)
    for prefix in ("module.", "net."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _load_checked(net: nn.Module, sd: Mapping[str, Tensor], arch: str, source: str) -> None:
    own = net.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k}: {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:

        def few(keys):
            return ", ".join(keys[:5]) + (f", ... ({len(keys)} in all)" if len(keys) > 5 else "")

        parts = []
        if missing:
            parts.append(f"missing keys: {few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {few(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches (file vs model): {few(shapes)}")
        raise ValueError(f"state dict {source} does not fit torchvision {arch}: "
                         + "; ".join(parts))
    net.load_state_dict(sd, strict=True)


def build_imagenet_model(
    name: str,
    weights: str | os.PathLike | None = None,
    *,
    input_size: int | None = None,
    deeplift_safe: bool = True,
    progress: bool = True,
) -> ImageNetClassifier:
    """Build ``name`` (see :data:`ARCHS`) as an :class:`ImageNetClassifier` in eval mode.

    ``weights``:

    * ``None``: random initialisation (torchvision's), ``class_names`` None;
    * a torchvision weights name, ``"IMAGENET1K_V1"``, ``"DEFAULT"`` or
      ``"ResNet18_Weights.IMAGENET1K_V1"``: loaded from ``$TORCH_HOME/hub/checkpoints``,
      downloaded there on first use (hash checked, ``weights_only``); offline, a RuntimeError
      says where to put the file;
    * a path to a local state-dict file (``.pth`` / ``.pt``, or any existing file) of the
      torchvision network (or of an :class:`ImageNetClassifier`: the ``net.`` prefix is
      stripped), loaded with ``torch.load(weights_only=True)``; a state dict of another
      architecture raises a ValueError naming the missing / unexpected keys. ``class_names``
      are then the standard ImageNet-1k categories.

    ``input_size``: the resolution the network sees (default :func:`input_size` of ``name``:
    224, Inception-v3 299; ViT: its own size; Inception-v3 takes at least 75).
    ``deeplift_safe`` (default True): :func:`make_deeplift_safe` is applied (forward values
    and gradients are unchanged; Captum's DeepLift / DeepLiftShap then work on ResNets).

    AdvEdge's networks (Section V-A, papers/advedge.txt): ``resnet50``, ``densenet169``
    (wrapped as :class:`DenseNetForCAM`), ``vgg16`` and ``inception_v3``. Inception-v3 is built
    without its auxiliary classifier (``AuxLogits.*`` in a loaded state dict are dropped) and
    with ``transform_input=False``: its weights (ported from TensorFlow) expect pixels scaled
    to [-1, 1]; torchvision gets there by normalising with the ImageNet mean/std and then
    ``transform_input=True`` (which undoes that normalisation and applies ``(x - 0.5) / 0.5``);
    here ``normalize`` uses mean = std = 0.5 directly. Same values (to rounding), and the
    output of ``model.normalize`` is exactly what the network sees (the Grad explainer
    differentiates with respect to it).
    """
    from torchvision import models as tvm

    if name not in ARCHS:
        raise ValueError(f"unknown ImageNet model {name!r}; known: {', '.join(ARCHS)}")
    builder = tvm.get_model_builder(name)
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    class_names = None
    label = None
    extra = _builder_kwargs(name)
    if weights is None:
        net = builder(weights=None, **extra)
    elif _is_state_dict_path(weights):
        path = Path(weights).expanduser()
        net = builder(weights=None, **extra)
        _load_checked(net, _drop_unused(name, load_state_dict_file(path)), name, str(path))
        class_names, label = imagenet_categories(), str(path)
    else:
        w = resolve_weights(name, weights)
        kwargs: dict[str, Any] = {"num_classes": len(w.meta["categories"]), **extra}
        if name.startswith("vit"):
            kwargs["image_size"] = int(w.meta["min_size"][0])
        sd = _drop_unused(name, _torchvision_state_dict(w, progress))
        net = builder(weights=None, **kwargs)
        _load_checked(net, sd, name, f"{w} ({_checkpoint_path(w.url)})")
        class_names, label = tuple(w.meta["categories"]), str(w)
        tf = w.transforms()
        mean, std = tuple(getattr(tf, "mean", mean)), tuple(getattr(tf, "std", std))
    if name == "inception_v3":
        mean, std = _INCEPTION_MEAN, _INCEPTION_STD
    if name.startswith("densenet"):
        net = DenseNetForCAM(net)
    if input_size is None:  # ViT needs its own size
        input_size = int(getattr(net, "image_size", _INPUT_SIZES.get(name, INPUT_SIZE)))
    elif hasattr(net, "image_size") and int(input_size) != net.image_size:
        raise ValueError(f"{name} takes {net.image_size}x{net.image_size} inputs only")
    if int(input_size) < _MIN_INPUT_SIZES.get(name, 1):
        raise ValueError(f"{name} takes inputs of at least {_MIN_INPUT_SIZES[name]} px, "
                         f"got input_size={input_size}")
    model = ImageNetClassifier(net, name, input_size, mean, std, class_names, None, label)
    if deeplift_safe:
        make_deeplift_safe(model)
    return model.eval()


def _is_state_dict_path(weights: Any) -> bool:
    if isinstance(weights, os.PathLike):
        return True
    if not isinstance(weights, str):
        return False
    p = Path(weights).expanduser()
    return p.suffix.lower() in _STATE_DICT_SUFFIXES or os.sep in weights or p.is_file()


# --------------------------------------------------------------------------------------------
# DeepLift
# --------------------------------------------------------------------------------------------


class DeepLiftBasicBlock(nn.Module):
    """torchvision's ResNet ``BasicBlock`` with one non-inplace ReLU module per use
    (``relu1``, ``relu2``) and an out-of-place residual add. Same submodule names for the
    weights (``conv1``, ``bn1``, ``conv2``, ``bn2``, ``downsample``), so state dicts are
    unchanged; the same forward values and gradients."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.conv1, self.bn1 = block.conv1, block.bn1
        self.conv2, self.bn2 = block.conv2, block.bn2
        self.downsample = block.downsample
        self.stride = block.stride
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu2(out + identity)


class DeepLiftBottleneck(nn.Module):
    """torchvision's ``Bottleneck`` with separate non-inplace ReLUs (``relu1..3``)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.conv1, self.bn1 = block.conv1, block.bn1
        self.conv2, self.bn2 = block.conv2, block.bn2
        self.conv3, self.bn3 = block.conv3, block.bn3
        self.downsample = block.downsample
        self.stride = block.stride
        self.relu1, self.relu2, self.relu3 = nn.ReLU(), nn.ReLU(), nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu3(out + identity)


class DeepLiftMaxPool2d(nn.Module):
    """``nn.MaxPool2d`` written with linear operations and one ReLU module per comparison,
    ``max(m, v) = m + relu(v - m)`` over the ``k * k`` shifted, strided views of the input
    (padding replicates the edge, which never changes a window's maximum since every padded
    window also holds the edge element it copies).

    Why: Captum's DeepLift rule for ``nn.MaxPool2d`` (captum 0.9) breaks summation to delta when
    windows overlap (``max_unpool2d`` keeps one of the contributions an input element gets from
    two windows) and when it directly follows another nonlinearity module such as ResNet's stem
    ReLU (the hooks then read a stale output gradient; captum issue #1104). Here DeepLift's
    rescale rule is applied to each ReLU, which sums to delta exactly. The forward value equals
    max-pooling up to rounding (``m + (v - m)`` may differ from ``v`` in the last bit); the
    gradient routes to the maximum as max-pooling's does (ties to the first element).
    Dilation 1 and ``ceil_mode=False`` only.

    Its ReLUs compute a maximum, not an activation: ``use_smooth_relu`` leaves them alone
    (``keeps_plain_relu``) and under ``smooth_relu_mode`` they keep relu's backward
    (``plain_relu``; all three in :mod:`xaisec.models.activations`), so AdvEdge's smoothing
    reaches the network's activations only, as on the plain torchvision network."""

    keeps_plain_relu = True

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()

        def pair(v):
            return (int(v), int(v)) if isinstance(v, int) else tuple(int(a) for a in v)

        self.kernel_size = pair(kernel_size)
        self.stride = pair(stride if stride is not None else kernel_size)
        self.padding = pair(padding)
        kh, kw = self.kernel_size
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError("padding must be at most half the kernel size")
        self.relus = nn.ModuleList(nn.ReLU() for _ in range(kh * kw - 1))

    @classmethod
    def from_module(cls, pool: nn.MaxPool2d) -> DeepLiftMaxPool2d:
        dil = pool.dilation if isinstance(pool.dilation, tuple) else (pool.dilation,) * 2
        if pool.ceil_mode or any(int(d) != 1 for d in dil) or pool.return_indices:
            raise ValueError(f"{pool} is not supported (dilation 1, ceil_mode False only)")
        return cls(pool.kernel_size, pool.stride, pool.padding)

    def forward(self, x: Tensor) -> Tensor:
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph), mode="replicate")
        h, w = x.shape[-2:]
        oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
        views = [x[..., i: i + sh * (oh - 1) + 1: sh, j: j + sw * (ow - 1) + 1: sw]
                 for i in range(kh) for j in range(kw)]
        m = views[0]
        with plain_relu():
            for relu, v in zip(self.relus, views[1:]):
                m = m + relu(v - m)
        return m

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


def make_deeplift_safe(model: nn.Module) -> nn.Module:
    """Make ``model`` fit for Captum's DeepLift / DeepLiftShap, in place; returns it.

    Captum applies DeepLift's rescale rule at nonlinearity *modules* (nn.ReLU, Sigmoid,
    MaxPool2d, Softmax ...; exact type), storing each one's input and output in forward hooks:
    a module called twice per forward pass breaks this (Captum raises "module is being used
    more than once"). torchvision's ResNet blocks call one ``nn.ReLU(inplace=True)`` twice
    (after ``bn1`` and after the residual add). So:

    * every torchvision ``BasicBlock`` / ``Bottleneck`` is replaced by
      :class:`DeepLiftBasicBlock` / :class:`DeepLiftBottleneck` (one ReLU module per use, the
      residual add out of place; same weights and state-dict keys);
    * every ``nn.MaxPool2d`` (ResNet's stem: 3x3, stride 2, overlapping windows, right after
      a ReLU) is replaced by :class:`DeepLiftMaxPool2d`, since Captum's max-pool rule does not
      sum to delta there (see that class);
    * every module with an ``inplace`` flag (ReLU, SiLU, Dropout ...) gets ``inplace=False``.

    The forward values and gradients are unchanged (up to rounding in the max-pool) and the state
    dict keeps its keys. With this, the attributions of an image sum to
    ``f_t(x) - mean_k f_t(b_k)`` (summation to delta) for ResNets: everything else in them is
    linear in eval mode (convolutions, BatchNorm, the residual add, average pooling, the input
    resize and normalisation). EfficientNet's SiLU and ViT's GELU, LayerNorm and attention have
    no DeepLift rule in Captum: they fall back to gradients (DeepLiftShap runs, but the
    summation holds only approximately); see :func:`deeplift_problems`.
    """
    from torchvision.models.resnet import BasicBlock, Bottleneck

    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) is BasicBlock:
                setattr(parent, child_name, DeepLiftBasicBlock(child))
            elif type(child) is Bottleneck:
                setattr(parent, child_name, DeepLiftBottleneck(child))
            elif type(child) is nn.MaxPool2d:
                setattr(parent, child_name, DeepLiftMaxPool2d.from_module(child))
    for m in model.modules():
        if getattr(m, "inplace", False) is True:
            m.inplace = False
    return model


#: Nonlinearities Captum's DeepLift has no rule for (gradient fallback).
_NO_DEEPLIFT_RULE = (nn.SiLU, nn.GELU, nn.Hardswish, nn.Mish, nn.ReLU6, nn.Hardsigmoid)


def deeplift_problems(model: nn.Module, x: Tensor) -> dict[str, list[str]]:
    """What stands in the way of exact DeepLift on ``model`` for input ``x`` (one forward pass
    under no_grad): ``{"reused": [...], "inplace": [...], "unsupported": [...]}`` lists of
    module names: Captum-supported nonlinearity modules called more than once, modules with
    ``inplace=True``, and nonlinearity modules without an exact DeepLift rule in Captum
    (SiLU, GELU, ..., and ``nn.MaxPool2d``, see :class:`DeepLiftMaxPool2d`)."""
    from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

    calls: dict[str, int] = {}
    handles = []
    names = {}
    for name, m in model.named_modules():
        if type(m) in SUPPORTED_NON_LINEAR:
            names[m] = name
            calls[name] = 0

            def hook(mod, args, out, name=name):
                calls[name] += 1

            handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return {
        "reused": [n for n, c in calls.items() if c > 1],
        "inplace": [n for n, m in model.named_modules() if getattr(m, "inplace", False) is True],
        "unsupported": [n for n, m in model.named_modules()
                        if isinstance(m, _NO_DEEPLIFT_RULE) or type(m) is nn.MaxPool2d],
    }


