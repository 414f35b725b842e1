"""Shared fixtures: every test starts from the same seeds; tiny models and data are made here."""
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture
def repo():
    return REPO


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest single-threaded; with other jobs on the machine, intra-op
    threads oversubscribe the cores and slow such tests down a hundredfold."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def randomise_bn(model, seed: int = 1):
    """Give every BatchNorm non-trivial running statistics and affine parameters, so that the
    eval-mode network is not just a rescaled copy of its convolutions (shared by the explainer
    tests and benchmarks: ``from conftest import randomise_bn``)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
            m.running_var.copy_(0.5 + torch.rand(c, generator=g))
            if m.affine:
                m.weight.data.copy_(0.8 + 0.4 * torch.rand(c, generator=g))
                m.bias.data.copy_(0.1 * torch.randn(c, generator=g))
    return model
