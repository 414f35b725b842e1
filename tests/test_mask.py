"""MASK (meaningful perturbation) and the pieces of AdvEdge's bi-level MASK attack
(xaisec.explainers.mask): blur, objective, unrolled steps, the batched Adam solve (equal to
per-image solves, with and without per-image early stopping) and the explainer. Tiny models and
images; the benchmark (``-m bench``) times the batched solve against a per-image loop."""
from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from xaisec.explainers.mask import (Mask, blur, gaussian_kernel1d, mask_objective, solve_masks,
                                    tv_norm, unrolled_mask_steps)

SMALL = dict(blur_kernel=5, blur_sigma=2.0)  # blur for 16x16 test images


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny models: single-threaded is fastest and steady on a shared machine."""


class PatchModel(nn.Module):
    """Two classes; the logit of class 0 is ``slope * (mean of a fixed square patch - thr)``
    (non-negative, monotone in the patch's pixels), class 1's is 0: only the patch matters."""

    def __init__(self, rows=(8, 16), cols=(16, 24), slope=60.0, thr=0.75):
        super().__init__()
        self.rows, self.cols, self.slope, self.thr = rows, cols, slope, thr

    def forward(self, x):
        (r0, r1), (c0, c1) = self.rows, self.cols
        v = x[:, :, r0:r1, c0:c1].mean((1, 2, 3))
        z = self.slope * (v - self.thr)
        return torch.stack([z, torch.zeros_like(z)], 1)


def tiny_cnn(dtype=torch.float32, classes=3):
    """A small conv net with smooth activations (second derivatives exist everywhere), eval."""
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.Softplus(beta=4.0),
        nn.Conv2d(6, 6, 3, stride=2, padding=1), nn.Softplus(beta=4.0),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, classes),
    )
    return net.to(dtype).eval()


def images(n=4, size=16, dtype=torch.float32, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g).to(dtype)


# --- blur, TV, objective ---------------------------------------------------------------------

def test_blur_of_constant_is_constant_and_kernel_sums_to_one():
    x = torch.full((2, 3, 12, 12), 0.37)
    torch.testing.assert_close(blur(x, 11, 10.0), x)
    torch.testing.assert_close(blur(x, 5, 2.0), x)
    k = gaussian_kernel1d(11, 10.0, dtype=torch.float64)
    assert k.shape == (11,) and abs(float(k.sum()) - 1) < 1e-12
    torch.testing.assert_close(k, k.flip(0))
    with pytest.raises(ValueError):
        gaussian_kernel1d(4, 1.0)


def test_blur_matches_2d_kernel_with_reflect_padding():
    x = images(2, 12, torch.float64)
    k = gaussian_kernel1d(5, 2.0, dtype=torch.float64)
    k2 = (k[:, None] * k[None, :]).expand(3, 1, 5, 5)
    ref = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), k2, groups=3)
    torch.testing.assert_close(blur(x, 5, 2.0), ref)


def test_tv_is_zero_on_flat_masks_and_per_image():
    m = torch.full((3, 1, 6, 6), 0.5)
    assert float(tv_norm(m).max()) < 1e-10
    m[1, 0, 2, 2] = 1.0
    tv = tv_norm(m)
    assert tv.shape == (3,) and tv[1] > 0.1 and tv[0] < 1e-10 and tv[2] < 1e-10


def test_objective_is_per_image_and_differentiable_in_x_and_m():
    model, x = tiny_cnn(torch.float64), images(3, dtype=torch.float64)
    m = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    t = torch.tensor([0, 1, 2])
    obj = mask_objective(model, x, m, t, **SMALL)
    assert obj.shape == (3,)
    for i in range(3):  # image i's objective depends on image i only
        one = mask_objective(model, x[i:i + 1], m[i:i + 1], t[i:i + 1], **SMALL)
        torch.testing.assert_close(one[0], obj[i])
    xg, mg = x.clone().requires_grad_(True), m.clone().requires_grad_(True)
    gx, gm = torch.autograd.grad(mask_objective(model, xg, mg, t, **SMALL).sum(), (xg, mg))
    assert gx.abs().sum() > 0 and gm.abs().sum() > 0
    # m = 1 everywhere keeps the image: the objective is then the clean probability
    ones = torch.ones_like(m)
    probs = torch.softmax(model(x), 1).gather(1, t[:, None])[:, 0]
    torch.testing.assert_close(mask_objective(model, x, ones, t, **SMALL), probs)


# --- the solve --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["cnn", "patch"])
def test_objective_decreases_over_the_solve(kind):
    if kind == "cnn":
        model, x, kw = tiny_cnn(), images(4), dict(mask_size=4, **SMALL)
    else:
        model, x, kw = PatchModel(), patch_images(4, torch.float32), dict(mask_size=8)
    m, info = solve_masks(model, x, None, iterations=60, **kw)
    s = kw["mask_size"]
    assert m.shape == (4, 1, s, s) and not m.requires_grad and m.dtype == x.dtype
    assert float(m.min()) >= 0 and float(m.max()) <= 1
    assert (info["objective"] < info["initial_objective"]).all(), info
    assert info["iterations"].tolist() == [60] * 4


def test_mask_finds_the_patch_the_model_reads():
    """The top-k saliency pixels (k = patch area) are the patch the model reads (IoU > 0.8)."""
    g = torch.Generator().manual_seed(0)
    n, rows, cols = 3, (8, 16), (16, 24)
    x = 0.2 * torch.rand(n, 3, 32, 32, generator=g)
    x[:, :, 8:16, 16:24] = 0.8 + 0.2 * torch.rand(n, 3, 8, 8, generator=g)
    model = PatchModel(rows, cols)
    res = Mask(model, mask_size=8, iterations=300).attribute(x, target=0)
    assert res.maps.shape == (n, 1, 32, 32)
    assert float(res.maps.min()) >= 0 and float(res.maps.max()) <= 1
    gt = torch.zeros(32, 32, dtype=torch.bool)
    gt[8:16, 16:24] = True
    k = int(gt.sum())
    for i in range(n):
        top = torch.zeros(32 * 32, dtype=torch.bool)
        top[res.maps[i, 0].flatten().topk(k).indices] = True
        top = top.view(32, 32)
        iou = float((top & gt).sum()) / float((top | gt).sum())
        assert iou > 0.8, (i, iou)


def patch_images(n=6, dtype=torch.float64):
    """32x32 images, dark background, a bright 8x8 patch at rows 8:16, cols 16:24 of a
    contrast that grows with the image index (so the solves differ from image to image)."""
    g = torch.Generator().manual_seed(0)
    x = 0.2 * torch.rand(n, 3, 32, 32, generator=g, dtype=dtype)
    lvl = torch.linspace(0.85, 1.0, n, dtype=dtype)[:, None, None, None]
    x[:, :, 8:16, 16:24] = lvl * (0.9 + 0.1 * torch.rand(n, 3, 8, 8, generator=g, dtype=dtype))
    return x


def _cnn_case():
    return tiny_cnn(torch.float64), images(4, dtype=torch.float64), torch.tensor([0, 1, 2, 0]), \
        dict(iterations=40, mask_size=4, **SMALL)


def _patch_case():
    return PatchModel(), patch_images(4), 0, dict(iterations=100, mask_size=8)


@pytest.mark.parametrize("case", [_cnn_case, _patch_case], ids=["cnn", "patch"])
def test_batched_solve_equals_per_image_solves(case):
    model, x, t, kw = case()
    m, info = solve_masks(model, x, t, **kw)
    for i in range(len(x)):
        ti = t if isinstance(t, int) else t[i:i + 1]
        mi, ii = solve_masks(model, x[i:i + 1], ti, **kw)
        torch.testing.assert_close(m[i:i + 1], mi)
        torch.testing.assert_close(info["objective"][i:i + 1], ii["objective"])


def test_batched_solve_with_early_stopping_is_per_image():
    """stop_tol freezes each image on its own; the batch gives each image's solo result."""
    model, x = PatchModel(), patch_images(6)
    kw = dict(iterations=150, mask_size=8, stop_tol=1e-4, patience=20)
    m, info = solve_masks(model, x, 0, **kw)
    its = info["iterations"]
    assert (its < 150).any(), its  # some image stopped early ...
    assert len(set(its.tolist())) > 2, its  # ... at different iterations
    for i in range(6):
        mi, ii = solve_masks(model, x[i:i + 1], 0, **kw)
        assert int(ii["iterations"][0]) == int(its[i])
        torch.testing.assert_close(m[i:i + 1], mi)
        torch.testing.assert_close(info["objective"][i:i + 1], ii["objective"])
    # a frozen mask no longer moves: more iterations leave the stopped images as they were
    m2, info2 = solve_masks(model, x, 0, **{**kw, "iterations": 300})
    stopped = its < 150
    torch.testing.assert_close(m2[stopped], m[stopped])
    assert (info2["iterations"][stopped] == its[stopped]).all()
    # without stop_tol nothing freezes
    _, info3 = solve_masks(model, x, 0, **{**kw, "stop_tol": None})
    assert info3["iterations"].tolist() == [150] * 6


def test_adam_matches_torch_optim_adam():
    """The solver's element-wise Adam is torch.optim.Adam (default betas) plus clamping."""
    model, x = tiny_cnn(torch.float64), images(3, dtype=torch.float64)
    t = torch.tensor([2, 0, 1])
    m, _ = solve_masks(model, x, t, iterations=25, lr=0.1, mask_size=4, **SMALL)
    ref = torch.full((3, 1, 4, 4), 0.5, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([ref], lr=0.1)
    xb = blur(x, 5, 2.0)
    for _ in range(25):
        opt.zero_grad()
        mask_objective(model, x, ref, t, blurred=xb).sum().backward()
        opt.step()
        with torch.no_grad():
            ref.clamp_(0, 1)
    torch.testing.assert_close(m, ref.detach())


def test_solve_init_and_zero_iterations():
    model, x = tiny_cnn(), images(2)
    init = torch.rand(2, 1, 3, 3)
    m, info = solve_masks(model, x, 1, iterations=0, init=init, **SMALL)
    torch.testing.assert_close(m, init)
    assert info["iterations"].tolist() == [0, 0]
    torch.testing.assert_close(info["objective"], info["initial_objective"])
    m, _ = solve_masks(model, x, 1, iterations=0, init=0.25, mask_size=5, **SMALL)
    assert m.shape == (2, 1, 5, 5) and bool((m == 0.25).all())


# --- unrolled steps (the attack's inner problem) ---------------------------------------------

def test_unrolled_steps_keep_the_graph_to_x():
    model = tiny_cnn(torch.float64)
    x = images(2, dtype=torch.float64).requires_grad_(True)
    t = torch.tensor([1, 2])
    m0 = torch.full((2, 1, 4, 4), 0.5, dtype=torch.float64)
    m_t = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    ms = unrolled_mask_steps(model, x, m0, t, 3, 0.5, create_graph=True, **SMALL)
    assert len(ms) == 3 and all(mj.requires_grad for mj in ms)
    loss = sum(((mj - m_t) ** 2).sum() for mj in ms)
    (gx,) = torch.autograd.grad(loss, x)
    assert torch.isfinite(gx).all() and gx.abs().sum() > 0
    # detached steps give the same masks, plain gradient descent with clamping
    ds = unrolled_mask_steps(model, x, m0, t, 3, 0.5, create_graph=False, **SMALL)
    assert all(not d.requires_grad for d in ds)
    for mj, dj in zip(ms, ds):
        torch.testing.assert_close(mj.detach(), dj)
    mg = m0.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(mask_objective(model, x.detach(), mg, t, **SMALL).sum(), mg)
    torch.testing.assert_close(ds[0], (m0 - 0.5 * g).clamp(0, 1))


def test_unrolled_zero_steps_is_empty():
    model, x = tiny_cnn(), images(2)
    assert unrolled_mask_steps(model, x, torch.full((2, 1, 4, 4), 0.5), None, 0, 0.1,
                               create_graph=True, **SMALL) == []


# --- the explainer ----------------------------------------------------------------------------

def test_mask_explainer_maps_and_extras():
    model, x = tiny_cnn(), images(3)
    expl = Mask(model, mask_size=4, iterations=20, **SMALL)
    assert (expl.name, expl.map_channels, expl.differentiable) == ("mask", 1, False)
    res = expl.attribute(x)  # target None: the argmax class
    assert res.maps.shape == (3, 1, 16, 16) and res.maps.dtype == x.dtype
    assert float(res.maps.min()) >= 0 and float(res.maps.max()) <= 1
    torch.testing.assert_close(res.target, model(x).argmax(1))
    assert res.extra["mask"].shape == (3, 1, 4, 4)
    assert res.extra["iterations"].tolist() == [20] * 3
    sal = 1 - F.interpolate(res.extra["mask"], size=(16, 16), mode="bilinear",
                            align_corners=False)
    torch.testing.assert_close(res.maps, sal)
    with pytest.raises(NotImplementedError):
        expl.attribute(x, create_graph=True)
    with torch.no_grad():  # works under no_grad (the solve enables gradients itself)
        torch.testing.assert_close(expl(x), res.maps)
        torch.testing.assert_close(expl.solve(x, res.target), res.extra["mask"])
    assert expl.blur_settings() == {"blur_kernel": 5, "blur_sigma": 2.0}
    m5 = expl.solve(x, res.target, iterations=5, init=res.extra["mask"])
    assert m5.shape == (3, 1, 4, 4)


def test_mask_settings_kwargs_and_defaults():
    kw = Mask.settings_kwargs({"mask": {"mask_size": 8, "blur_kernel": 5, "unknown": 1}})
    assert kw == {"mask_size": 8, "blur_kernel": 5}
    e = Mask(nn.Identity())
    assert (e.mask_size, e.iterations, e.lr, e.l1_coeff, e.tv_coeff, e.tv_beta,
            e.blur_kernel, e.blur_sigma, e.stop_tol) == (28, 500, 0.1, 1e-2, 1e-4, 3.0,
                                                         11, 10.0, None)


# --- benchmark --------------------------------------------------------------------------------

@pytest.mark.bench
def test_bench_batched_solve_vs_per_image_loop():
    """Times one batched solve of N CIFAR-sized images against N single-image solves on
    ResNet-20 (random weights, non-trivial BatchNorm, eval; the classifier scaled down so the
    softmax is not saturated). Prints both; asserts nothing about speed.

    Threads: XAISEC_BENCH_THREADS (default 1: on a shared 2-core machine two threads are
    slowed down at random). The masks are printed as a max difference, not asserted: in float32
    the batched and single-image convolutions round differently and the optimisation amplifies
    that (up to ~0.3 after 20 Adam steps here); in float64 they agree to 1e-14 (the unit tests
    check equality)."""
    import os

    from conftest import randomise_bn
    from xaisec.models.classifiers import build_model

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(int(os.environ.get("XAISEC_BENCH_THREADS", "1")))
    torch.manual_seed(0)
    model = randomise_bn(build_model(arch="resnet20", num_classes=10)).eval()
    with torch.no_grad():
        model.linear.weight.mul_(0.1)
    model = model.to(device)
    n, iters = 16, 20
    x = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(3)).to(device)
    kw = dict(iterations=iters, mask_size=8, blur_kernel=5, blur_sigma=2.0)

    def timed(fn):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out, time.perf_counter() - t0

    solve_masks(model, x[:2], None, **{**kw, "iterations": 2})  # warm-up
    (mb, _), tb = timed(lambda: solve_masks(model, x, None, **kw))
    loop, tl = timed(lambda: [solve_masks(model, x[i:i + 1], None, **kw)[0] for i in range(n)])
    diff = float((mb - torch.cat(loop)).abs().max())
    print(f"\nMASK solve, ResNet-20, {n} images 32x32, {iters} Adam iterations, "
          f"mask 8x8, {device.type}, {torch.get_num_threads()} thread(s):\n"
          f"  batched     {tb:7.2f} s  ({n * iters / tb:8.1f} image-iterations/s)\n"
          f"  per image   {tl:7.2f} s  ({n * iters / tl:8.1f} image-iterations/s)\n"
          f"  speed-up    {tl / tb:7.2f}x   (max |mask difference| {diff:.2e}, float32)")
