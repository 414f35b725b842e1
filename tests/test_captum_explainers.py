"""Tests of the Captum wrappers of xaisec.explainers: tiny random ResNet-20, eval mode."""
import pytest
import torch
from conftest import randomise_bn
from torch import nn

from xaisec.explainers import (
    EXPLAINERS,
    DeepLiftShap,
    IntegratedGradients,
    Lime,
    Saliency,
    SmoothGrad,
    make_explainer,
    slic_segments,
)
from xaisec.models.classifiers import build_model

N = 3
#: the Captum wrappers (not differentiable; MASK, an optimisation with 1-channel maps, has its own
#: tests in tests/test_mask.py)
CAPTUM = [n for n, c in EXPLAINERS.items() if not c.differentiable and n != "mask"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(dtype=torch.float32):
    m = randomise_bn(build_model(arch="resnet20", num_classes=10))
    return m.eval().to(dtype)


@pytest.fixture
def model():
    return _model()


@pytest.fixture
def x():
    return torch.rand(N, 3, 32, 32)


@pytest.fixture
def smooth_x():
    """Images with structure (SLIC merges the fragments of pure noise into one superpixel)."""
    low = torch.rand(N, 3, 4, 4)
    up = nn.functional.interpolate(low, size=32, mode="bilinear", align_corners=False)
    return (up + 0.05 * torch.rand(N, 3, 32, 32)).clamp(0, 1)


FAST = {
    "saliency": {},
    "ig": {"n_steps": 8},
    "deepliftshap": {"n_baselines": 3},
    "smoothgrad": {"nt_samples": 4},
    "lime": {"n_samples": 60},
}


@pytest.mark.parametrize("name", CAPTUM)
def test_shapes_target_and_mode(name, model, x):
    expl = make_explainer(name, model, **FAST[name])
    with torch.no_grad():  # works under no_grad too
        res = expl.attribute(x)
    maps = res.maps
    assert maps.shape == x.shape and maps.dtype == torch.float32 and not maps.requires_grad
    assert torch.isfinite(maps).all()
    torch.testing.assert_close(res.logits, model(x).detach())
    assert torch.equal(res.target, res.logits.argmax(1))
    assert not model.training
    model.train()
    res = expl.attribute(x[:1], target=3)
    assert model.training  # mode untouched
    assert res.target.tolist() == [3]


def test_unknown_name_and_bad_inputs(model, x):
    with pytest.raises(ValueError, match="saliency"):
        make_explainer("nope", model)
    expl = Saliency(model)
    with pytest.raises(ValueError):
        expl(x[0])
    with pytest.raises(ValueError):
        expl(x, target=torch.tensor([1, 2]))
    with pytest.raises(ValueError):
        expl(x, target=10)
    with pytest.raises(NotImplementedError):
        expl(x, create_graph=True)
    with pytest.raises(ValueError):
        DeepLiftShap(model, baselines=torch.rand(1, 3, 32, 32))


def test_saliency_is_abs_input_gradient(model, x):
    t = torch.tensor([0, 4, 9])
    maps = Saliency(model)(x, target=t)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(xg).gather(1, t[:, None]).sum(), xg)
    torch.testing.assert_close(maps, g.abs())


def test_ig_completeness():
    model = _model(torch.float64)
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    expl = IntegratedGradients(model, n_steps=200, internal_batch_size=100)
    res = expl.attribute(x)
    maps, t = res.maps, res.target
    with torch.no_grad():
        fx = model(x).gather(1, t[:, None])[:, 0]
        f0 = model(torch.zeros_like(x)).gather(1, t[:, None])[:, 0]
    # a ReLU network is piecewise linear along the path, so the quadrature error decays slowly
    # (measured here: ~5% at 200 steps, ~0.5% at 1000 for random weights); 10% tolerance
    err = (maps.sum((1, 2, 3)) - (fx - f0)).abs()
    assert (err <= 0.1 * (fx - f0).abs()).all(), (err, fx - f0)
    # and fewer steps are worse on the sum (the integral converges)
    coarse = IntegratedGradients(model, n_steps=4)(x, target=t).sum((1, 2, 3))
    assert err.sum() < (coarse - (fx - f0)).abs().sum()


def test_deepliftshap_summation_to_delta(model, x):
    bl = torch.rand(4, 3, 32, 32)
    expl = DeepLiftShap(model, baselines=bl)
    res = expl.attribute(x)
    maps, t = res.maps, res.target
    with torch.no_grad():
        fx = model(x).gather(1, t[:, None])[:, 0]
        fb = model(bl)[:, t].mean(0)
    torch.testing.assert_close(maps.sum((1, 2, 3)), fx - fb, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(
    "cls, kw",
    [
        (Saliency, {}),
        (IntegratedGradients, {"n_steps": 10, "internal_batch_size": 7}),
        (DeepLiftShap, {"n_baselines": 3}),
    ],
)
def test_chunking_matches_one_chunk(cls, kw, model, x):
    one = cls(model, batch_size=None, **kw)(x)
    chunked = cls(model, batch_size=2, **kw)(x)
    torch.testing.assert_close(chunked, one, rtol=1e-4, atol=1e-5)


def test_smoothgrad_seeded(model, x):
    a = SmoothGrad(model, nt_samples=6, nt_samples_batch_size=4, seed=1)(x)
    state = torch.random.get_rng_state()
    b = SmoothGrad(model, nt_samples=6, nt_samples_batch_size=4, seed=1)(x)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    c = SmoothGrad(model, nt_samples=6, nt_samples_batch_size=4, seed=2)(x)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    sal = Saliency(model)(x)
    assert not torch.allclose(a, sal)


def test_slic_segments_contiguous(smooth_x):
    seg = slic_segments(smooth_x)
    assert seg.shape == (N, 1, 32, 32) and seg.dtype == torch.long
    for s in seg:
        u = s.unique()
        assert torch.equal(u, torch.arange(len(u))) and 10 <= len(u) <= 80


@pytest.mark.parametrize("baseline", ["mean", "zeros", "segment_mean"])
def test_lime_seeded_and_mask(baseline, model, smooth_x):
    x = smooth_x
    kw = dict(n_samples=100, perturbations_per_eval=50, baseline=baseline)
    e1 = Lime(model, seed=0, **kw)
    r1 = e1.attribute(x)
    a = r1.maps
    b = Lime(model, seed=0, **kw)(x)
    c = Lime(model, seed=5, **kw)(x)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    mask, seg = r1.extra["mask"], r1.extra["segments"][:, 0]
    assert mask.shape == (N, 32, 32) and mask.dtype == torch.bool
    for i in range(N):
        w = r1.extra["weights"][i]
        # the map is the superpixel weight broadcast over channels
        torch.testing.assert_close(a[i], w[seg[i]].expand(3, -1, -1))
        chosen = seg[i][mask[i]].unique()
        assert len(chosen) <= 5 and (w[chosen] > 0).all()
        # they are the largest positive weights
        pos = w[w > 0].sort(descending=True).values
        torch.testing.assert_close(w[chosen].sort(descending=True).values, pos[: len(chosen)])
        assert len(chosen) == min(5, len(pos)) and len(w) >= 10
        sizes = torch.bincount(seg[i].reshape(-1))
        assert mask[i].sum() <= sizes.sort(descending=True).values[:5].sum()
