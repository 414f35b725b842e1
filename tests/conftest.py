"""Shared fixtures: every test starts from the same seeds; tiny models and data are made here."""
from pathlib import Path

import numpy as np
import pytest
import torch

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
