"""Classifiers for 32x32 inputs: ResNet-20 (option-A shortcut) and VGG-13 with BatchNorm.

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


class VGG13(nn.Module):
    """VGG-13 with BatchNorm for 32x32 inputs: five pooled stages to 512x1x1, then a linear
    classifier (the usual CIFAR adaptation)."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        v = spec.variant
        self.normalize = Normalize(spec.mean, spec.std)
        layers, in_ch = [], 3
        for c in VGG13_CFG:
            if c == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [
                    nn.Conv2d(in_ch, c, 3, padding=1, bias=v == "nobn"),
                    _norm(c, v),
                    make_activation(spec.activation, spec.beta),
                ]
                in_ch = c
        self.features_seq = nn.Sequential(*layers)
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
    model = {"resnet20": ResNet20, "vgg13": VGG13}[spec.arch](spec)
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
