"""Modules by name, the default layers per architecture, and forward hooks released by a
context manager (:func:`capture`).

Layers are addressed by name, so defended copies from :func:`xaisec.defenses.apply_defense`
(names kept) and ``nobn`` models (``layer3.2.bn2`` an ``nn.Identity``) work unchanged.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["capture", "default_layer", "get_module", "recorded", "upsample"]


def get_module(model: nn.Module, name: str) -> nn.Module:
    """``model.get_submodule(name)``; a missing name is a ValueError naming the model."""
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
            handles.append(get_module(model, name).register_forward_hook(save_output(name)))
        for name in inputs:
            handles.append(get_module(model, name).register_forward_pre_hook(save_input(name)))
        yield outs, ins
    finally:
        for h in handles:
            h.remove()


def recorded(store: dict[str, Tensor], name: str) -> Tensor:
    """The tensor :func:`capture` recorded for ``name``; a RuntimeError if the module did not
    run."""
    try:
        return store[name]
    except KeyError:
        raise RuntimeError(f"module {name!r} did not run in the model's forward pass") from None


def upsample(maps: Tensor, size) -> Tensor:
    """Bilinear (``align_corners=False``) resize of (N, C, h, w) maps to ``size``."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)


_LAYER_KINDS = ("gradcam", "cam", "classifier")


def default_layer(model: nn.Module, kind: str) -> str:
    """Default module name per architecture.

    ``gradcam`` (Grad-CAM and Relevance-CAM): ResNet-20 ``layer3.2.bn2`` (last block's second
    BatchNorm, before the residual add and the ReLU; docs/settings.md, CFN); VGG-13 the last
    normalisation module before the final max-pool. ``cam``: the last conv block's output,
    ResNet-20 ``layer3`` (post-ReLU, the input of the global average pool); VGG-13 the last
    activation before the final max-pool. ``classifier``: the final linear layer.

    A model with an ``explainer_layer(kind)`` method names its own (the AdvEdge CIFAR families
    in :mod:`xaisec.models.classifiers`, the ImageNet networks in
    :mod:`xaisec.models.imagenet`, which raise a ValueError where a method is not defined,
    e.g. CAM on VGG-16's fully connected head).
    """
    if kind not in _LAYER_KINDS:
        raise ValueError(f"unknown layer kind {kind!r}; known: {', '.join(_LAYER_KINDS)}")
    own = getattr(model, "explainer_layer", None)
    if callable(own):
        return own(kind)
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


def layer_and_classifier(model: nn.Module, layer: str | None, classifier: str | None,
                         kind: str) -> tuple[str, str]:
    """The feature layer (``layer`` or the model's default of ``kind``) and the final linear
    layer (``classifier`` or the model's default) of a CAM-style explainer, both checked."""
    layer = layer or default_layer(model, kind)
    classifier = classifier or default_layer(model, "classifier")
    get_module(model, layer)
    if not isinstance(get_module(model, classifier), nn.Linear):
        raise ValueError(f"{classifier!r} is not an nn.Linear")
    return layer, classifier
