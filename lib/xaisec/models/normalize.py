"""Input normalisation inside every model (images enter in [0, 1]); shared by the CIFAR-size
classifiers and the ImageNet networks, so neither imports the other for it."""
from __future__ import annotations

import torch
from torch import nn

#: Input normalisation of the CFN paper's code for CIFAR-10 and GTSRB (docs/settings.md, CFN).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x):
        return (x - self.mean) / self.std
