"""Classifiers for 32x32 inputs: ResNet-20 (option-A shortcut) and VGG-13 with BatchNorm (CFN
paper), and the CIFAR members of the AdvEdge paper's four families (Section V-A, papers/
advedge.txt: ResNet, DenseNet, VGG, Inception; ``resnet20`` is the ResNet one):

==============  ======================================================  =========  ==========
arch            model                                                   params     CAM layer
==============  ======================================================  =========  ==========
``densenet40``  :class:`DenseNetBC`, DenseNet-BC L = 40, k = 12          0.18 M     ``act_final``
``vgg16_gap``   :class:`VGG16GAP`, VGG-16's 13 convs + BN, GAP, linear   14.7 M     ``convs.41``
``inception``   :class:`InceptionCIFAR`, GoogLeNet at half width          1.5 M      ``inception5b``
==============  ======================================================  =========  ==========

(parameters at 10 classes.) Each ends in global average pooling and one linear layer
(``linear``), so CAM is defined, and names its layers for the explainers
(:meth:`CamLayers.explainer_layer`: Grad-CAM and CAM read the last conv block's output).
The VGG-16 one is ``vgg16_gap``, not ``vgg16``, which names torchvision's ImageNet VGG-16.

Every model takes images in [0, 1] and normalises them itself (``model.normalize``), so
attacks and explainers work in pixel space. Layer names are stable across variants:
``layer3.2.bn2`` exists in every ResNet-20 (an ``Identity`` in the ``nobn`` variant), which is
where the CFN paper's Grad-CAM and Relevance-CAM read their activations.

Variants (CFN paper, Section 3 and Table 5):

* ``bn``: BatchNorm with trainable affine parameters (default);
* ``frozenbn``: BatchNorm whose affine parameters (gamma = 1, beta = 0) are not trainable;
* ``nobn``: no BatchNorm at all (convolutions get a bias instead).

Activations are modules (``act``, ``act1``, ``act2``...), so :func:`set_activation` can swap
ReLU for Softplus (fine-tuning needs second-order gradients) and back (evaluation).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from xaisec.models.normalize import IMAGENET_MEAN, IMAGENET_STD, Normalize  # noqa: E402,F401

from xaisec.catalog import ACTIVATIONS, ARCHS, CIFAR_ARCHS, IMAGENET_ARCHS, VARIANTS  # noqa: E402,F401


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model before loading its state dict."""

    arch: str = "resnet20"
    num_classes: int = 10
    variant: str = "bn"
    activation: str = "relu"
    beta: float = 8.0
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; known: {', '.join(ARCHS)}")
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; known: {', '.join(VARIANTS)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {self.activation!r}; known: {', '.join(ACTIVATIONS)}"
            )
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        keys = cls.__dataclass_fields__.keys()
        d = {k: (tuple(v) if k in ("mean", "std") else v) for k, v in d.items() if k in keys}
        return cls(**d)


def make_activation(kind: str, beta: float = 8.0) -> nn.Module:
    if kind == "relu":
        return nn.ReLU()
    if kind == "softplus":
        return nn.Softplus(beta=beta)
    raise ValueError(f"unknown activation {kind!r}; known: {', '.join(ACTIVATIONS)}")


def _norm(channels: int, variant: str) -> nn.Module:
    if variant == "nobn":
        return nn.Identity()
    bn = nn.BatchNorm2d(channels)
    if variant == "frozenbn":
        bn.weight.requires_grad_(False)
        bn.bias.requires_grad_(False)
    return bn


class ShortcutA(nn.Module):
    """Option-A shortcut: stride-2 subsampling and zero-padding of the new channels."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.stride = stride
        self.pad = planes - in_planes

    def forward(self, x):
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.pad // 2
        return F.pad(x, (0, 0, 0, 0, half, self.pad - half))


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride, variant, activation, beta):
        super().__init__()
        bias = variant == "nobn"
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=bias)
        self.bn1 = _norm(planes, variant)
        self.act1 = make_activation(activation, beta)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=bias)
        self.bn2 = _norm(planes, variant)
        self.act2 = make_activation(activation, beta)
        if stride != 1 or in_planes != planes:
            self.shortcut = ShortcutA(in_planes, planes, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet20(nn.Module):
    """ResNet-20 for 32x32 inputs (He et al. 2016, Section 4.2): 3x3 stem with 16 channels,
    three stages of three BasicBlocks at 16/32/64 channels, global average pool, linear."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        v, a, b = spec.variant, spec.activation, spec.beta
        self.normalize = Normalize(spec.mean, spec.std)
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=v == "nobn")
        self.bn1 = _norm(16, v)
        self.act = make_activation(a, b)
        blocks, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            layer = []
            for i in range(3):
                layer.append(BasicBlock(in_planes, planes, stride if i == 0 else 1, v, a, b))
                in_planes = planes
            blocks.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3 = blocks
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(64, spec.num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def features(self, x):
        x = self.act(self.bn1(self.conv1(self.normalize(x))))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward(self, x):
        return self.linear(torch.flatten(self.avgpool(self.features(x)), 1))


#: VGG-13 configuration (Simonyan & Zisserman 2015, column B).
VGG13_CFG = (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def vgg_layers(cfg, spec: ModelSpec) -> list[nn.Module]:
    """A VGG conv stack: per number, conv 3x3 (bias only without BatchNorm), the variant's
    normalisation and the activation; per ``"M"``, a 2x2 max-pool."""
    layers, in_ch = [], 3
    for c in cfg:
        if c == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(in_ch, c, 3, padding=1, bias=spec.variant == "nobn"),
                       _norm(c, spec.variant), make_activation(spec.activation, spec.beta)]
            in_ch = c
    return layers


class VGG13(nn.Module):
    """VGG-13 with BatchNorm for 32x32 inputs: five pooled stages to 512x1x1, then a linear
    classifier (the usual CIFAR adaptation)."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.normalize = Normalize(spec.mean, spec.std)
        self.features_seq = nn.Sequential(*vgg_layers(VGG13_CFG, spec))
        self.classifier = nn.Linear(512, spec.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def features(self, x):
        return self.features_seq(self.normalize(x))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


# --------------------------------------------------------------------------------------------
# The AdvEdge paper's families at CIFAR size (Section V-A, papers/advedge.txt)
# --------------------------------------------------------------------------------------------


class CamLayers:
    """Mixin: the model names its explainer layers (read by
    :func:`xaisec.explainers.hooks.default_layer`): ``gradcam_layer`` and ``cam_layer``, the
    last conv block's output (post-activation, the input of the global average pool), and
    ``classifier_layer``, the one linear layer after it."""

    gradcam_layer: str
    cam_layer: str
    classifier_layer: str = "linear"

    def explainer_layer(self, kind: str) -> str:
        names = {"gradcam": self.gradcam_layer, "cam": self.cam_layer,
                 "classifier": self.classifier_layer}
        if kind not in names:
            raise ValueError(f"unknown layer kind {kind!r}; known: {', '.join(names)}")
        return names[kind]


def _conv_unit(in_ch: int, out_ch: int, k: int, spec: ModelSpec, stride: int = 1) -> nn.Sequential:
    """conv (k x k, 'same' padding) -> norm -> activation (``conv``, ``bn``, ``act``)."""
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(in_ch, out_ch, k, stride, k // 2, bias=spec.variant == "nobn"),
        bn=_norm(out_ch, spec.variant),
        act=make_activation(spec.activation, spec.beta),
    ))


def _init_convs(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


class DenseLayer(nn.Module):
    """DenseNet-BC bottleneck layer (Huang et al. 2017, Section 3): BN-ReLU-Conv(1x1, 4k)-
    BN-ReLU-Conv(3x3, k); its k new maps are concatenated to its input."""

    def __init__(self, in_ch: int, growth: int, spec: ModelSpec):
        super().__init__()
        v, bias = spec.variant, spec.variant == "nobn"
        self.bn1 = _norm(in_ch, v)
        self.act1 = make_activation(spec.activation, spec.beta)
        self.conv1 = nn.Conv2d(in_ch, 4 * growth, 1, bias=bias)
        self.bn2 = _norm(4 * growth, v)
        self.act2 = make_activation(spec.activation, spec.beta)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=bias)

    def forward(self, x):
        out = self.conv1(self.act1(self.bn1(x)))
        out = self.conv2(self.act2(self.bn2(out)))
        return torch.cat([x, out], 1)


class Transition(nn.Module):
    """DenseNet transition: BN-ReLU-Conv(1x1, compressing the channels)-AvgPool(2)."""

    def __init__(self, in_ch: int, out_ch: int, spec: ModelSpec):
        super().__init__()
        self.bn = _norm(in_ch, spec.variant)
        self.act = make_activation(spec.activation, spec.beta)
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=spec.variant == "nobn")
        self.pool = nn.AvgPool2d(2)

    def forward(self, x):
        return self.pool(self.conv(self.act(self.bn(x))))


class DenseNetBC(CamLayers, nn.Module):
    """DenseNet-BC for 32x32 inputs (Huang et al. 2017, Section 4.2, "DenseNet-BC"): a 3x3
    convolution to 2k channels, three dense blocks of (L - 4) / 6 bottleneck layers at 32, 16
    and 8 px joined by transitions that halve the channels (compression 0.5), then BN-ReLU,
    global average pooling and one linear layer.

    The CIFAR member of the AdvEdge paper's DenseNet family (Section V-A uses DenseNet-169 on
    ImageNet; the CIFAR architectures are not given). Depth 40, growth 12 (``densenet40``):
    0.18 M parameters and 0.07 GMAC per image, the scale of ResNet-20 (0.27 M, 0.04), the
    smallest CIFAR ResNet, which is this project's ResNet member; the DenseNet paper's
    smallest CIFAR DenseNet-BC, L = 100 (k = 12, 0.8 M, about 0.3 GMAC), is
    ``DenseNetBC(spec, depth=100)`` (not in the catalog).

    CAM / Grad-CAM layer ``act_final``: the final BN-ReLU's output (132 x 8 x 8 for L = 40),
    the input of the global average pool.
    """

    gradcam_layer = cam_layer = "act_final"

    def __init__(self, spec: ModelSpec, depth: int = 40, growth: int = 12):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"DenseNet-BC depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        self.normalize = Normalize(spec.mean, spec.std)
        ch = 2 * growth
        self.conv1 = nn.Conv2d(3, ch, 3, padding=1, bias=spec.variant == "nobn")
        for b in (1, 2, 3):
            layers = []
            for _ in range(n):
                layers.append(DenseLayer(ch, growth, spec))
                ch += growth
            setattr(self, f"dense{b}", nn.Sequential(*layers))
            if b < 3:
                setattr(self, f"trans{b}", Transition(ch, ch // 2, spec))
                ch //= 2
        self.bn_final = _norm(ch, spec.variant)
        self.act_final = make_activation(spec.activation, spec.beta)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(ch, spec.num_classes)
        _init_convs(self)

    def features(self, x):
        x = self.conv1(self.normalize(x))
        x = self.trans2(self.dense2(self.trans1(self.dense1(x))))
        return self.act_final(self.bn_final(self.dense3(x)))

    def forward(self, x):
        return self.linear(torch.flatten(self.avgpool(self.features(x)), 1))


#: VGG-16's convolutions (Simonyan & Zisserman 2015, column D); "M": 2x2 max-pool. Only the
#: first three pools are kept at 32x32 (see :class:`VGG16GAP`).
VGG16_GAP_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, 512, 512, 512)


class VGG16GAP(CamLayers, nn.Module):
    """VGG-16 with BatchNorm for 32x32 inputs and a CAM head: VGG-16's 13 3x3 convolutions
    (each conv-BN-ReLU), global average pooling, one linear layer (instead of VGG's three
    fully connected layers), so CAM is defined (Zhou et al. 2016, "VGGnet-GAP").

    The CIFAR member of the AdvEdge paper's VGG family (Section V-A uses VGG-16 on ImageNet).
    Zhou et al. drop the layers after conv5_3 (pool5 and the FC layers) to keep a 14x14 map at
    224 px; at 32 px that would leave 2x2, so pool4 is dropped as well: the last two blocks
    run at 4x4 and CAM reads a 512 x 4 x 4 map (ResNet-20's is 8x8). 14.7 M parameters.

    ``convs`` is flat (conv, BN, activation, ... with max-pools after blocks 1-3); CAM /
    Grad-CAM layer: its last activation, ``convs.41`` (conv5_3's ReLU).
    """

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.normalize = Normalize(spec.mean, spec.std)
        layers = vgg_layers(VGG16_GAP_CFG, spec)
        self.convs = nn.Sequential(*layers)
        self.gradcam_layer = self.cam_layer = f"convs.{len(layers) - 1}"
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(VGG16_GAP_CFG[-1], spec.num_classes)
        _init_convs(self)

    def features(self, x):
        return self.convs(self.normalize(x))

    def forward(self, x):
        return self.linear(torch.flatten(self.avgpool(self.features(x)), 1))


class InceptionModule(nn.Module):
    """GoogLeNet's Inception module (Szegedy et al. 2015, Fig. 2b) with its 5x5 branch
    factorised into two 3x3 convolutions (Inception-v3, Szegedy et al. 2016, Fig. 5): four
    branches concatenated, ``b1`` 1x1; ``b3`` 1x1 -> 3x3; ``b5`` 1x1 -> 3x3 -> 3x3; ``pool``
    3x3 max-pool (stride 1) -> 1x1. Every convolution is conv-BN-activation."""

    def __init__(self, in_ch, c1, c3r, c3, c5r, c5, cp, spec: ModelSpec):
        super().__init__()
        self.b1 = _conv_unit(in_ch, c1, 1, spec)
        self.b3 = nn.Sequential(_conv_unit(in_ch, c3r, 1, spec), _conv_unit(c3r, c3, 3, spec))
        self.b5 = nn.Sequential(_conv_unit(in_ch, c5r, 1, spec), _conv_unit(c5r, c5, 3, spec),
                                _conv_unit(c5, c5, 3, spec))
        self.pool = nn.Sequential(nn.MaxPool2d(3, 1, 1), _conv_unit(in_ch, cp, 1, spec))
        self.out_channels = c1 + c3 + c5 + cp

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.pool(x)], 1)


#: GoogLeNet's nine Inception modules (Szegedy et al. 2015, Table 1: #1x1, #3x3 reduce, #3x3,
#: #5x5 reduce, #5x5, pool proj), at half width in :class:`InceptionCIFAR`.
GOOGLENET_MODULES = (
    ("3a", (64, 96, 128, 16, 32, 32)), ("3b", (128, 128, 192, 32, 96, 64)), "M",
    ("4a", (192, 96, 208, 16, 48, 64)), ("4b", (160, 112, 224, 24, 64, 64)),
    ("4c", (128, 128, 256, 24, 64, 64)), ("4d", (112, 144, 288, 32, 64, 64)),
    ("4e", (256, 160, 320, 32, 128, 128)), "M",
    ("5a", (256, 160, 320, 32, 128, 128)), ("5b", (384, 192, 384, 48, 128, 128)),
)


class InceptionCIFAR(CamLayers, nn.Module):
    """A GoogLeNet-style Inception network for 32x32 inputs: a 3x3 conv stem (96 channels, no
    downsampling: the 7x7/2 stem and the first pools of ImageNet GoogLeNet would leave 4x4
    of a 32 px image), GoogLeNet's nine Inception modules (3a-3b at 32 px, 4a-4e at 16, 5a-5b
    at 8, 3x3/2 max-pools between the stages) at half GoogLeNet's widths, with 5x5 branches
    factorised into two 3x3 as in Inception-v3 (:class:`InceptionModule`), then global average
    pooling and one linear layer (no dropout; no auxiliary classifiers).

    The CIFAR member of the AdvEdge paper's Inception family (Section V-A uses Inception-v3 on
    ImageNet; the CIFAR architectures are not given). Half width keeps it near the other
    CIFAR models' cost: 1.5 M parameters, 0.38 GMAC per image (full width: 6.2 M, 1.5 GMAC;
    VGG-16-GAP 0.40, DenseNet-BC-40 0.07, ResNet-20 0.04).

    CAM / Grad-CAM layer ``inception5b``: the last module's output, 512 x 8 x 8.
    """

    gradcam_layer = cam_layer = "inception5b"

    def __init__(self, spec: ModelSpec, width: float = 0.5):
        super().__init__()
        self.normalize = Normalize(spec.mean, spec.std)
        ch = int(192 * width)
        self.stem = _conv_unit(3, ch, 3, spec)
        pools = 0
        for item in GOOGLENET_MODULES:
            if item == "M":
                pools += 1
                setattr(self, f"pool{pools}", nn.MaxPool2d(3, 2, 1))
                continue
            name, widths = item
            m = InceptionModule(ch, *(int(c * width) for c in widths), spec)
            setattr(self, f"inception{name}", m)
            ch = m.out_channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(ch, spec.num_classes)
        _init_convs(self)

    def features(self, x):
        x = self.stem(self.normalize(x))
        x = self.inception3b(self.inception3a(x))
        x = self.pool1(x)
        for name in ("4a", "4b", "4c", "4d", "4e"):
            x = getattr(self, f"inception{name}")(x)
        x = self.pool2(x)
        return self.inception5b(self.inception5a(x))

    def forward(self, x):
        return self.linear(torch.flatten(self.avgpool(self.features(x)), 1))



class WideBasic(nn.Module):
    """Pre-activation wide block (Zagoruyko & Komodakis 2016, Fig. 1d without dropout):
    BN-act-conv3x3-BN-act-conv3x3, a 1x1 projection shortcut where the shape changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, spec: ModelSpec):
        super().__init__()
        v, a, b = spec.variant, spec.activation, spec.beta
        self.bn1, self.act1 = _norm(in_ch, v), make_activation(a, b)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=v == "nobn")
        self.bn2, self.act2 = _norm(out_ch, v), make_activation(a, b)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=v == "nobn")
        self.shortcut = (nn.Conv2d(in_ch, out_ch, 1, stride, bias=v == "nobn")
                         if stride != 1 or in_ch != out_ch else None)

    def forward(self, x):
        o = self.act1(self.bn1(x))
        short = x if self.shortcut is None else self.shortcut(o)
        return self.conv2(self.act2(self.bn2(self.conv1(o)))) + short


class WideResNet(CamLayers, nn.Module):
    """Wide-ResNet WRN-``depth``-``width`` for 32x32 inputs (Zagoruyko & Komodakis 2016): a 3x3
    stem with 16 channels, three groups of (depth - 4) / 6 wide blocks at 16k, 32k, 64k
    channels (strides 1, 2, 2), a final BN-activation, global average pooling and one linear
    layer, so CAM is defined. The AdvEdge paper's Table VI network (Sec. VI-B) is a
    Wide-ResNet on CIFAR-10: ``wrn28_10`` (36.5 M parameters) at the paper's scale,
    ``wrn16_2`` (0.7 M) the CPU stand-in. CAM / Grad-CAM layer: ``act`` (the last activation,
    64k x 8 x 8)."""

    gradcam_layer = cam_layer = "act"

    def __init__(self, spec: ModelSpec, depth: int = 28, width: int = 10):
        super().__init__()
        if (depth - 4) % 6 or depth < 10:
            raise ValueError(f"Wide-ResNet depth must be 6 n + 4 with n >= 1, got {depth}")
        n = (depth - 4) // 6
        self.normalize = Normalize(spec.mean, spec.std)
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=spec.variant == "nobn")
        groups, in_ch = [], 16
        for planes, stride in ((16 * width, 1), (32 * width, 2), (64 * width, 2)):
            blocks = []
            for i in range(n):
                blocks.append(WideBasic(in_ch, planes, stride if i == 0 else 1, spec))
                in_ch = planes
            groups.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = groups
        self.bn = _norm(in_ch, spec.variant)
        self.act = make_activation(spec.activation, spec.beta)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(in_ch, spec.num_classes)
        _init_convs(self)

    def features(self, x):
        x = self.layer3(self.layer2(self.layer1(self.conv1(self.normalize(x)))))
        return self.act(self.bn(x))

    def forward(self, x):
        return self.linear(torch.flatten(self.avgpool(self.features(x)), 1))


#: arch -> class of the 32x32 classifiers (:data:`CIFAR_ARCHS`)
CIFAR_MODELS = {"resnet20": ResNet20, "vgg13": VGG13, "densenet40": DenseNetBC,
                "vgg16_gap": VGG16GAP, "inception": InceptionCIFAR,
                "wrn28_10": lambda spec: WideResNet(spec, 28, 10),
                "wrn16_2": lambda spec: WideResNet(spec, 16, 2)}


def build_model(spec: ModelSpec | None = None, **kwargs) -> nn.Module:
    """Build an untrained model from a :class:`ModelSpec` (or its fields as keywords).

    ImageNet architectures (:data:`IMAGENET_ARCHS`) are built by
    :func:`xaisec.models.imagenet.build_imagenet_model` with random weights (a checkpoint then loads
    into them); their pretrained weights come from :func:`xaisec.workflow.tasks.pretrained_model`."""
    spec = spec or ModelSpec(**kwargs)
    if spec.arch in IMAGENET_ARCHS:
        from xaisec.models.imagenet import build_imagenet_model

        model = build_imagenet_model(spec.arch, None)
        model.spec = spec
        return model
    model = CIFAR_MODELS[spec.arch](spec)
    model.spec = spec
    return model


def set_activation(model: nn.Module, kind: str, beta: float = 8.0) -> nn.Module:
    """Replace every activation module (ReLU, Softplus, SmoothReLU) of ``model`` in place
    (same names), return it."""
    from xaisec.models.activations import SmoothReLU

    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, (nn.ReLU, nn.Softplus, SmoothReLU)):
                setattr(module, child_name, make_activation(kind, beta))
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
