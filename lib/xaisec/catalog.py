"""The names every part of the project shares, defined once and importable without torch
(the Snakemake planning code, the config validation and the library all read them here)."""
from __future__ import annotations

#: data sets the workflow prepares; ``imagenet`` holds evaluation images only
DATASETS = ("cifar10", "cifar100", "gtsrb", "shapes", "imagenet")
#: data sets read from a download or a local copy (``shapes`` is generated)
REAL_DATASETS = ("cifar10", "cifar100", "gtsrb", "imagenet")
#: data sets whose prepared splits carry ground-truth masks (FGSM-XAI's IoU/RMSE need them)
MASKED_DATASETS = ("shapes", "gtsrb", "imagenet")

#: 32x32 classifiers trained by the workflow: ResNet-20 and VGG-13 (CFN paper); DenseNet-BC-40,
#: VGG-16 with a GAP head and a GoogLeNet-style net, with ResNet-20 the CIFAR members of the
#: AdvEdge paper's four families (Section V-A; xaisec.models.classifiers); Wide-ResNets
#: WRN-28-10 and the CPU stand-in WRN-16-2 (AdvEdge Table VI, robust training)
CIFAR_ARCHS = ("resnet20", "vgg13", "densenet40", "vgg16_gap", "inception", "wrn28_10",
               "wrn16_2")
#: torchvision ImageNet networks, loaded with pretrained weights, never trained: EXIAA's,
#: FGSM-XAI's, and the AdvEdge paper's four (Section V-A)
IMAGENET_ARCHS = ("resnet18", "vit_b_16", "efficientnet_v2_s", "efficientnet_b0",
                  "resnet50", "densenet169", "vgg16", "inception_v3")
ARCHS = CIFAR_ARCHS + IMAGENET_ARCHS
VARIANTS = ("bn", "nobn", "frozenbn")
ACTIVATIONS = ("relu", "softplus")

#: the CFN paper's explanation-aware backdoors (Section 2.2), explainers attacked and losses
CFN_ATTACKS = ("sf", "rh", "fd")
CFN_EXPLAINERS = ("grad", "gradcam", "relevancecam")
CFN_LOSSES = ("mse", "dssim")

#: a model's training regime, as the CFN paper's tables group models (Tables 1-5, 8)
REGIMES = ("bn", "frozenbn", "nobn", "softplus")


def model_regime(entry: dict) -> str:
    """``softplus``, ``nobn``, ``frozenbn`` or ``bn`` for a model's config entry
    (``models.<key>``): read from its ``activation`` and ``variant``, never from its key."""
    if entry.get("activation", "relu") == "softplus":
        return "softplus"
    return entry.get("variant", "bn")


def model_info(models: dict, keys) -> dict[str, dict]:
    """{key: {"arch", "regime"}} of the model keys ``keys`` (a clear error for an unknown one)."""
    out = {}
    for k in keys:
        if k not in models:
            raise KeyError(f"model {k!r} is not defined under 'models' "
                           f"(defined: {', '.join(models) or 'none'})")
        out[k] = {"arch": models[k]["arch"], "regime": model_regime(models[k])}
    return out
