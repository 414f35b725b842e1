"""Tests of xaisec.explainers against independent computations (Captum, pytorch-grad-cam,
explicit float64 recomputations, finite differences)."""
import copy

import numpy as np
import pytest
import torch
from conftest import randomise_bn
import torch.nn.functional as F
from torch import nn

from xaisec.defenses import apply_model_defense as apply_defense
from xaisec.explainers import (
    CAM,
    EXPLAINERS,
    GradCAM,
    Gradient,
    RelevanceCAM,
    SmoothReLU,
    make_explainer,
    minmax,
    normalize_max,
    normalize_zscore_channelmax,
    use_smooth_relu,
)
from xaisec.models.classifiers import build_model, set_activation

N = 6
#: the differentiable explainers built from the model alone with input-sized maps (the others are
#: Captum wrappers: tests/test_captum_explainers.py; RTS needs its trained saliency model:
#: tests/test_rts.py; ADV2's Grad gives pooled maps: tests/test_advedge_attack.py; all of them
#: run through the family checks of tests/test_explainer_family.py)
DIFF = [n for n, c in EXPLAINERS.items() if c.differentiable and n not in ("rts", "adv2grad")]


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(variant="bn", activation="relu", dtype=torch.float32):
    m = build_model(arch="resnet20", num_classes=10, variant=variant)
    set_activation(m, activation, 8.0)  # as the fine-tuning swaps ReLU for Softplus(beta=8)
    return randomise_bn(m).eval().to(dtype)


@pytest.fixture
def model():
    return _model()


@pytest.fixture
def x():
    return torch.rand(N, 3, 32, 32)


def _no_hooks(model):
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
        assert not m._backward_hooks and not getattr(m, "_backward_pre_hooks", {})


def _without_normalize(model):
    """The same network taking the already normalised input."""
    m = copy.deepcopy(model)
    m.normalize = nn.Identity()
    return m


# ------------------------------------------------------------------------------------------
# Gradient
# ------------------------------------------------------------------------------------------


def test_gradient_matches_captum_saliency_on_normalised_input(model, x):
    from captum.attr import Saliency

    t = torch.randint(0, 10, (N,))
    ours = Gradient(model)(x, target=t)
    assert ours.shape == (N, 3, 32, 32)
    xn = model.normalize(x).detach().requires_grad_(True)
    ref = Saliency(_without_normalize(model)).attribute(xn, target=t, abs=True)
    torch.testing.assert_close(ours, ref)
    # chain rule: d/dx_norm = std * d/dx
    std = model.normalize.std
    pix = Gradient(model, wrt="input")(x, target=t)
    torch.testing.assert_close(ours, pix * std)
    xr = x.clone().requires_grad_(True)
    torch.testing.assert_close(pix, Saliency(model).attribute(xr, target=t, abs=True))
    _no_hooks(model)


# ------------------------------------------------------------------------------------------
# Grad-CAM
# ------------------------------------------------------------------------------------------


def _captum_gradcam(model, x, t, layer_module):
    from captum.attr import LayerAttribution, LayerGradCam

    attr = LayerGradCam(model, layer_module).attribute(x, target=t, relu_attributions=True)
    return LayerAttribution.interpolate(attr, (32, 32), interpolate_mode="bilinear")


def test_gradcam_matches_captum(model, x):
    t = torch.randint(0, 10, (N,))
    ours = GradCAM(model, layer="layer3.2.bn2")(x, target=t)
    assert ours.shape == (N, 1, 32, 32)
    ref = _captum_gradcam(model, x, t, model.layer3[2].bn2)
    torch.testing.assert_close(ours, ref)
    assert ours.abs().sum() > 0
    _no_hooks(model)


def test_gradcam_matches_pytorch_grad_cam(model, x):
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    t = torch.randint(0, 10, (N,))
    ours = GradCAM(model)(x, target=t)
    with pgc.GradCAM(model=model, target_layers=[model.layer3[2].bn2]) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in t])
    # pytorch-grad-cam min-max scales the 8x8 map, resizes it bilinearly (OpenCV, half-pixel
    # centres, as align_corners=False) and min-max scales the result again: since bilinear
    # resizing commutes with affine scaling, that is min-max of the upsampled map.
    ours = minmax(ours)
    torch.testing.assert_close(ours[:, 0], torch.from_numpy(ref), atol=1e-5, rtol=1e-4)
    _no_hooks(model)


# ------------------------------------------------------------------------------------------
# Relevance-CAM
# ------------------------------------------------------------------------------------------


def _relevancecam_reference(model, x, t, weighting="channel"):
    """Explicit float64 Relevance-CAM: a manual forward of the last block (no hooks), then the
    z+ rule through the linear layer and the average pool written per sample with numpy."""
    m = copy.deepcopy(model).double()
    xd = x.double()
    with torch.no_grad():
        h = m.act(m.bn1(m.conv1(m.normalize(xd))))
        h = m.layer2(m.layer1(h))
        h = m.layer3[1](m.layer3[0](h))
        blk = m.layer3[2]
        a_map = blk.bn2(blk.conv2(blk.act1(blk.bn1(blk.conv1(h)))))  # layer3.2.bn2
        feat = blk.act2(a_map + blk.shortcut(h))  # layer3 output
        W = m.linear.weight.numpy()  # (C, K)
    A, Fm = a_map.numpy(), feat.numpy()
    C, K = W.shape
    cams = []
    for n in range(x.shape[0]):
        a = Fm[n].mean(axis=(1, 2))  # global average pool, (K,)
        R_out = np.full(C, -1.0 / C)
        R_out[int(t[n])] = 1.0
        R_k = np.zeros(K)
        for j in range(C):
            zp = np.maximum(a * W[j], 0.0)
            if zp.sum() > 0:
                R_k += zp / zp.sum() * R_out[j]
        # average pool, z+ rule: R_khw = F+_khw / sum F+_k * R_k, then the spatial sum
        Fp = np.maximum(Fm[n], 0.0)
        tot = Fp.sum(axis=(1, 2), keepdims=True)
        R_khw = np.divide(Fp, tot, out=np.zeros_like(Fp), where=tot > 0) * R_k[:, None, None]
        if weighting == "channel":  # Relevance-CAM paper: channel weights, spatial sums
            alpha = R_khw.sum(axis=(1, 2))
            cams.append(np.maximum(np.tensordot(alpha, A[n], axes=1), 0.0))
        else:  # CFN attack authors' code: elementwise relevance x activation
            cams.append(np.maximum((R_khw * A[n]).sum(axis=0), 0.0))
    cam = torch.from_numpy(np.stack(cams))[:, None]
    return F.interpolate(cam, size=(32, 32), mode="bilinear", align_corners=False)


@pytest.mark.parametrize("weighting", ["channel", "spatial"])
@pytest.mark.parametrize("targeted", [False, True])
def test_relevancecam_matches_float64_reference(model, x, targeted, weighting):
    t = torch.randint(0, 10, (N,)) if targeted else None
    expl = RelevanceCAM(model, weighting=weighting)
    ours = expl(x, target=t)
    t_used = t if targeted else model(x).argmax(1)
    ref = _relevancecam_reference(model, x, t_used, weighting)
    assert ours.shape == (N, 1, 32, 32)
    torch.testing.assert_close(ours.double(), ref, atol=1e-5, rtol=1e-4)
    assert ours.abs().sum() > 0
    _no_hooks(model)


# ------------------------------------------------------------------------------------------
# CAM
# ------------------------------------------------------------------------------------------


def test_cam_matches_linear_weights(model, x):
    t = torch.randint(0, 10, (N,))
    ours = CAM(model)(x, target=t)
    with torch.no_grad():
        feats = model.features(x)  # layer3 output, (N, 64, 8, 8)
    raw = torch.einsum("nk,nkhw->nhw", model.linear.weight[t].detach(), feats)[:, None]
    up = F.interpolate(raw, size=(32, 32), mode="bilinear", align_corners=False)
    lo = up.amin(dim=(2, 3), keepdim=True)
    hi = up.amax(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(ours, (up - lo) / (hi - lo))
    assert ours.amin() == 0 and ours.amax() == 1
    raw_ours = CAM(model, normalize=False, upsample=False)(x, target=t)
    torch.testing.assert_close(raw_ours, raw, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------------
# Second order
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, kw",
    [
        ("grad", {}),
        ("gradcam", {}),
        ("relevancecam", {}),
        ("relevancecam", {"weighting": "spatial"}),
    ],
)
def test_second_order_gradient_to_weights(name, kw, x):
    model = _model(activation="softplus")
    expl = make_explainer(name, model, **kw)
    res = expl.attribute(x[:4], create_graph=True)
    maps = res.maps
    assert maps.requires_grad and res.logits.requires_grad
    loss = normalize_zscore_channelmax(maps).pow(2).mean()
    w = model.layer1[0].conv1.weight  # reaches the Grad map only through second derivatives
    (g,) = torch.autograd.grad(loss, w)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


@pytest.mark.parametrize("name", ["gradcam", "grad"])
def test_second_order_matches_finite_differences(name):
    torch.manual_seed(3)
    model = _model(activation="softplus", dtype=torch.float64)
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    t = torch.tensor([1, 7])
    target_map = torch.rand(2, 1, 32, 32, dtype=torch.float64)
    expl = make_explainer(name, model)

    def loss_fn():
        m = expl(x, target=t, create_graph=True)
        return (m.amax(1, keepdim=True) - target_map).pow(2).mean()

    w = model.layer2[0].conv1.weight
    (g,) = torch.autograd.grad(loss_fn(), w)
    idx, h = (3, 5, 1, 2), 1e-6
    with torch.no_grad():
        w[idx] += h
    up = loss_fn().item()
    with torch.no_grad():
        w[idx] -= 2 * h
    down = loss_fn().item()
    with torch.no_grad():
        w[idx] += h
    fd = (up - down) / (2 * h)
    assert abs(g[idx].item()) > 1e-8
    assert g[idx].item() == pytest.approx(fd, rel=1e-4, abs=1e-9)


def test_gradcam_second_order_to_input_finite_differences():
    torch.manual_seed(4)
    model = _model(activation="softplus", dtype=torch.float64)
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64, requires_grad=True)
    expl = GradCAM(model)

    def loss_fn(inp):
        return expl(inp, target=torch.tensor([2, 3]), create_graph=True).pow(2).mean()

    (g,) = torch.autograd.grad(loss_fn(x), x)
    idx, h = (1, 2, 10, 20), 1e-6
    e = torch.zeros_like(x)
    e[idx] = h
    with torch.no_grad():
        fd = (loss_fn(x + e) - loss_fn(x - e)).item() / (2 * h)
    assert g[idx].item() == pytest.approx(fd, rel=1e-4, abs=1e-10)


def test_grad_map_input_gradient_zero_with_relu_nonzero_with_smooth_relu(x):
    relu_model = _model()
    smooth_model = use_smooth_relu(copy.deepcopy(relu_model))
    assert not any(isinstance(m, nn.ReLU) for m in smooth_model.modules())
    assert sum(isinstance(m, SmoothReLU) for m in smooth_model.modules()) == 19
    grads = []
    for m in (relu_model, smooth_model):
        xi = x[:2].clone().requires_grad_(True)
        maps = Gradient(m)(xi, target=torch.tensor([0, 1]), create_graph=True)
        (g,) = torch.autograd.grad(maps.sum(), xi)
        grads.append(g)
    assert torch.count_nonzero(grads[0]) == 0  # ReLU networks: the Hessian term vanishes
    assert grads[1].abs().sum() > 0
    # same forward values
    torch.testing.assert_close(smooth_model(x), relu_model(x))


# ------------------------------------------------------------------------------------------
# SmoothReLU
# ------------------------------------------------------------------------------------------


def test_smooth_relu_forward_and_backward_formula():
    z = torch.linspace(-2, 2, 401, dtype=torch.float64)
    z = z[z.abs() > 1e-9].requires_grad_(True)
    act = SmoothReLU(tau=1e-4)
    y = act(z)
    torch.testing.assert_close(y, torch.relu(z))
    (g,) = torch.autograd.grad(y.sum(), z)
    zd = z.detach()
    s = zd / torch.sqrt(zd**2 + 1e-4)
    expected = torch.where(zd < 0, 1 + s, s)
    torch.testing.assert_close(g, expected)


def test_smooth_relu_gradcheck_and_gradgradcheck():
    act = SmoothReLU(tau=1e-4)
    # first order: away from 0 the smoothed derivative equals relu's to ~tau / (2 z^2)
    far = torch.cat([torch.linspace(-4, -3, 5), torch.linspace(3, 4, 5)]).double()
    assert torch.autograd.gradcheck(act, (far.requires_grad_(True),))
    # second order (the smoothed backward's own derivative), including |z| << sqrt(tau)
    near = torch.tensor([-0.5, -0.02, -3e-3, 4e-3, 0.03, 0.7], dtype=torch.float64)
    assert torch.autograd.gradgradcheck(act, (near.requires_grad_(True),))
    # d h / d z = tau / (z^2 + tau)^(3/2)
    z = near.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(act(z).sum(), z, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), z)
    torch.testing.assert_close(gg, 1e-4 / (near**2 + 1e-4) ** 1.5)


# ------------------------------------------------------------------------------------------
# Targets, shapes, variants, defenses, hooks, mode
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DIFF))
def test_target_none_is_argmax_and_logits_are_kept(name, model, x):
    expl = make_explainer(name, model)
    res = expl.attribute(x)
    m_none = res.maps
    logits = model(x).detach()
    torch.testing.assert_close(res.logits, logits)
    assert not res.logits.requires_grad and not m_none.requires_grad
    assert torch.equal(res.target, logits.argmax(1))
    torch.testing.assert_close(m_none, expl(x, target=logits.argmax(1)))
    other = (logits.argmax(1) + 1) % 10
    assert not torch.allclose(expl(x, target=other), m_none)
    assert expl(x, target=3).shape == m_none.shape  # an int applies to every sample
    # batch of one, and under no_grad
    with torch.no_grad():
        one = expl(x[:1])
    assert one.shape == (1, expl.map_channels, 32, 32)
    torch.testing.assert_close(one, m_none[:1], atol=1e-5, rtol=1e-4)
    _no_hooks(model)


@pytest.mark.parametrize("name", sorted(DIFF))
def test_nobn_model(name, x):
    model = _model(variant="nobn")
    assert isinstance(model.layer3[2].bn2, nn.Identity)
    maps = make_explainer(name, model)(x, target=torch.arange(N) % 10)
    assert maps.shape[0] == N and torch.isfinite(maps).all() and maps.abs().sum() > 0
    if name == "gradcam":
        ref = _captum_gradcam(model, x, torch.arange(N) % 10, model.layer3[2].bn2)
        torch.testing.assert_close(maps, ref)
    _no_hooks(model)


@pytest.mark.parametrize("defense", ["cfn", "batchstat"])
def test_defended_copy(defense, model, x):
    defended = apply_defense(model, defense).eval()
    t = torch.randint(0, 10, (N,))
    ours = GradCAM(defended)(x, target=t)
    ref = _captum_gradcam(defended, x, t, defended.layer3[2].bn2)
    torch.testing.assert_close(ours, ref)
    for name in DIFF:
        assert torch.isfinite(make_explainer(name, defended)(x)).all()
    _no_hooks(defended)
    _no_hooks(model)


def test_vgg13_default_layers():
    model = randomise_bn(build_model(arch="vgg13", num_classes=10)).eval()
    x = torch.rand(2, 3, 32, 32)
    gc, rc, cam = GradCAM(model), RelevanceCAM(model), CAM(model)
    assert isinstance(model.get_submodule(gc.layer), nn.BatchNorm2d)
    assert isinstance(model.get_submodule(cam.layer), nn.ReLU)
    assert isinstance(model.features_seq[int(gc.layer.split(".")[1]) + 2], nn.MaxPool2d)
    for e in (gc, rc, cam):
        assert e(x).shape == (2, 1, 32, 32)
    _no_hooks(model)


def test_model_mode_untouched(model, x):
    for train in (True, False):
        model.train(train)
        for name in DIFF:
            make_explainer(name, model)(x)
            assert all(m.training == train for m in model.modules())


def test_no_hook_leak_after_exception(model, x):
    for name in DIFF:
        expl = make_explainer(name, model)
        with pytest.raises(RuntimeError):
            expl(torch.rand(2, 4, 32, 32))  # wrong channel count: fails inside the forward
        _no_hooks(model)
        with pytest.raises(ValueError, match="out of range"):
            expl(x, target=torch.full((N,), 10))
        _no_hooks(model)
        with pytest.raises(ValueError, match="shape"):
            expl(x, target=torch.zeros(N + 1, dtype=torch.long))
        _no_hooks(model)


def test_bad_arguments(model):
    with pytest.raises(ValueError, match="grad, gradcam, relevancecam, cam"):
        make_explainer("nope", model)
    with pytest.raises(ValueError, match="no module named"):
        GradCAM(model, layer="layer9")
    with pytest.raises(ValueError, match="not an nn.Linear"):
        CAM(model, classifier="layer3")
    with pytest.raises(ValueError, match="shape"):
        Gradient(model)(torch.rand(3, 32, 32))
    with pytest.raises(RuntimeError, match="did not run"):
        m = copy.deepcopy(model)
        m.unused = nn.Identity()
        GradCAM(m, layer="unused")(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="channel, spatial"):
        RelevanceCAM(model, weighting="pixel")
    vgg = build_model(arch="vgg13", num_classes=10).eval()
    with pytest.raises(ValueError, match="same grid"):
        rc = RelevanceCAM(vgg, weighting="spatial", feature_layer="features_seq")
        rc(torch.rand(2, 3, 32, 32))


def test_input_gradient_flows_through_maps(model, x):
    """AdvEdge use: a loss on the map backpropagates to the input (Grad-CAM, CAM)."""
    for name, kw in (("gradcam", {}), ("cam", {}), ("relevancecam", {}),
                     ("relevancecam", {"weighting": "spatial"})):
        xi = x[:2].clone().requires_grad_(True)
        maps = make_explainer(name, model, **kw)(xi, create_graph=True)
        (g,) = torch.autograd.grad(maps.pow(2).sum(), xi)
        assert g.abs().sum() > 0


# ------------------------------------------------------------------------------------------
# Normalisation helpers
# ------------------------------------------------------------------------------------------


def test_normalize_zscore_channelmax():
    maps = torch.rand(4, 3, 8, 8, dtype=torch.float64) * torch.tensor([1.0, 5.0, 0.1]).view(
        1, 3, 1, 1
    )
    ours = normalize_zscore_channelmax(maps)
    arr = maps.numpy()
    ref = np.empty((4, 1, 8, 8))
    for n in range(4):
        zs = [
            (arr[n, c] - arr[n, c].mean()) / np.sqrt(arr[n, c].var(ddof=1) + 1e-5)
            for c in range(3)
        ]
        ref[n, 0] = np.max(np.stack(zs), axis=0)
    torch.testing.assert_close(ours, torch.from_numpy(ref))
    biased = normalize_zscore_channelmax(maps, unbiased=False)
    assert not torch.allclose(biased, ours)
    # a constant map stays finite (variance + eps)
    assert torch.isfinite(normalize_zscore_channelmax(torch.ones(1, 1, 4, 4))).all()


def test_normalize_max_and_minmax():
    maps = torch.rand(3, 3, 5, 5)
    maps[2] = 0.0
    out = normalize_max(maps)
    ref = maps.amax(1, keepdim=True)
    ref[:2] = ref[:2] / ref[:2].amax(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(out, ref)
    assert out.shape == (3, 1, 5, 5) and torch.isfinite(out).all()
    mm = minmax(maps * 3 - 1)
    assert mm.shape == maps.shape
    torch.testing.assert_close(mm[:2].amin(dim=(1, 2, 3)), torch.zeros(2))
    torch.testing.assert_close(mm[:2].amax(dim=(1, 2, 3)), torch.ones(2))
    assert torch.count_nonzero(mm[2]) == 0  # constant map -> 0, no NaN
