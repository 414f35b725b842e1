"""Model transforms: evaluation-time normalisation defenses against explanation-aware backdoors.

Two variants of the CFN defense, because the CFN paper's text and its authors' evaluation code
differ (docs/settings.md, CFN section):

* ``cfn`` (the paper's text, default): every ``BatchNorm2d`` becomes Channel-wise Feature
  Normalization, ``(x - mean) / sqrt(var + eps)`` with the mean and *biased* variance over
  (N, H, W) of the current batch, no affine parameters and no running statistics.
* ``batchstat`` (the authors' 2023 evaluation code): current-batch statistics, but the learned
  affine parameters (gamma, beta) are kept, i.e. BatchNorm run in training mode without
  updating its running statistics.

``none`` is the model as it is (its own BatchNorm with running statistics in eval mode).

Both defenses make a model's output depend on the batch it is evaluated with: evaluation code
must fix the batch size and composition (see :mod:`xaisec.evaluate`). Every transform returns a
copy and leaves the given model untouched; layer names are kept, so hooks on e.g.
``layer3.2.bn2`` still find their module.
"""
from __future__ import annotations

import copy

import torch.nn.functional as F
from torch import nn


class ChannelwiseFeatureNorm(nn.Module):
    """CFN: per-channel standardisation with the current batch's statistics, no affine."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps

    def forward(self, x):
        return F.batch_norm(x, None, None, None, None, True, 0.0, self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}"


class BatchStatNorm(nn.Module):
    """BatchNorm with current-batch statistics and the learned affine parameters kept."""

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        self.num_features = bn.num_features
        self.eps = bn.eps
        self.weight = bn.weight
        self.bias = bn.bias

    def forward(self, x):
        return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, affine={self.weight is not None}"


def replace_batchnorm(module: nn.Module, make) -> int:
    """Replace every ``BatchNorm2d`` below ``module`` (in place) by ``make(bn)``; returns how
    many were replaced."""
    n = 0
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, make(child))
            n += 1
        else:
            n += replace_batchnorm(child, make)
    return n


def no_defense(model: nn.Module) -> nn.Module:
    """``none``: a plain copy of ``model``."""
    return copy.deepcopy(model)


def cfn(model: nn.Module, eps: float = 1e-5) -> nn.Module:
    """``cfn``: a copy with every BatchNorm2d replaced by :class:`ChannelwiseFeatureNorm`."""
    defended = copy.deepcopy(model)
    replace_batchnorm(defended, lambda bn: ChannelwiseFeatureNorm(bn.num_features, eps))
    return defended


def batchstat(model: nn.Module) -> nn.Module:
    """``batchstat``: a copy with every BatchNorm2d replaced by :class:`BatchStatNorm`."""
    defended = copy.deepcopy(model)
    replace_batchnorm(defended, BatchStatNorm)
    return defended
