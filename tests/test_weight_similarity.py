"""CKA and Spearman weight similarity (CFN Figures 3, 10, 11) against direct computations."""
import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from xaisec.models.classifiers import build_model
from xaisec.metrics.weights import compare_state_dicts, linear_cka, spearman


def hsic_cka(x, y):
    """CKA from its definition: HSIC of the centred linear kernels."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h
    return np.trace(k @ l_) / np.sqrt(np.trace(k @ k) * np.trace(l_ @ l_))


@pytest.mark.parametrize("shape", [(6, 4), (5, 12), (16, 16)])
def test_cka_matches_definition(shape):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=shape), rng.normal(size=(shape[0], shape[1] + 2))
    assert linear_cka(x, y) == pytest.approx(hsic_cka(x, y), rel=1e-10)


def test_cka_invariances():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(10, 6))
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))  # orthogonal
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, x @ q) == pytest.approx(1.0)
    assert linear_cka(x, 3.7 * x) == pytest.approx(1.0)
    assert linear_cka(x, rng.normal(size=(10, 6))) < 0.9
    # conv weights (out, in, kh, kw) are compared as one row per filter
    w = torch.randn(8, 3, 3, 3)
    assert linear_cka(w, w * 2) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same number of rows"):
        linear_cka(np.ones((3, 2)), np.ones((4, 2)))


def test_spearman_matches_scipy():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(4, 5))
    b = a + rng.normal(scale=0.5, size=a.shape)
    b[0, 0] = b[0, 1]  # a tie
    assert spearman(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel())[0], rel=1e-12)
    assert spearman(a, np.exp(a)) == pytest.approx(1.0)  # monotone transform


def test_compare_state_dicts_layers():
    torch.manual_seed(0)
    m0 = build_model(arch="resnet20")
    m1 = build_model(arch="resnet20")
    m1.load_state_dict(m0.state_dict())
    with torch.no_grad():
        m1.layer3[2].conv2.weight.add_(0.5 * torch.randn_like(m1.layer3[2].conv2.weight))
    df = compare_state_dicts(m0.state_dict(), m1.state_dict())
    assert not df["layer"].str.contains("running_").any()
    changed = df.set_index("layer").loc["layer3.2.conv2.weight"]
    assert changed["cka"] < 0.99 and changed["spearman"] < 0.99
    same = df[df["layer"] != "layer3.2.conv2.weight"]
    assert np.allclose(same["spearman"].dropna(), 1.0)  # constant BN init: undefined (NaN)
    assert same["spearman"].notna().sum() >= 19  # 19 conv layers + the linear layer, less the changed one
