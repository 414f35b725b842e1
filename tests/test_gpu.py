"""CUDA against the CPU result, one test per family: a training step, a backdoor fine-tuning
step, every registered explainer, every attack, every defense and the explanation cache round
trip (``pytest -m gpu``; ``make gpu-check`` runs these plus the workflow on CUDA).

Skipped where CUDA is absent. ``XAISEC_GPU_TEST_DEVICE`` (default ``cuda``) names the device
compared with the CPU; ``XAISEC_GPU_TEST_DEVICE=cpu`` runs the same comparisons CPU against
CPU, which checks the tests themselves on a machine without a GPU (``GPU_CHECK_ALLOW_CPU=1
scripts/gpu_check.sh``).

Tolerances: TF32 is off and cuDNN deterministic (module fixture), so the devices differ only by
float32 summation order, ~1e-6 relative in the activations. Where a ReLU's input lies within
that of zero its gradient switches, so gradient maps (Grad, Saliency, IG, SmoothGrad, DeepLift)
and what is iterated on them (BIM's path, fine-tuning towards Grad maps) move far more than
1e-6. The tolerances were set on the CPU with a stand-in for that rounding,
``XAISEC_GPU_TEST_JITTER`` (see :func:`device_copy`): with every weight of the compared copy
moved by 1e-6 of its tensor's largest value, CAM-family maps, LIME, logits and losses moved by
<= 3e-5, gradient maps by <= 7e-3 in ``||dev - cpu|| / ||cpu||``, and BIM changed a third of its
pixels but neither its loss (<= 0.2%) nor its success or predictions. Every test passes at 1e-5
(10 times the stand-in) and all but the loosest fail at 1e-3; a device bug (a wrong tensor,
device or dtype) gives differences of order 1. The explained classes are given explicitly (the
CPU model's prediction), so a near tie cannot send the two devices to different classes.

Random draws: the project draws what must be reproducible on a CPU ``torch.Generator`` (data
order and augmentation, DeepLiftShap baselines, LIME's samples through Captum's sampling
function, attack targets), so both devices see the same numbers. SmoothGrad's noise is drawn by
Captum with ``torch.normal`` on the input's device: CUDA's generator (Philox) gives another
stream than the CPU's (Mersenne Twister) from the same seed. Its exact comparison therefore
routes that one call through the CPU generator; a second test runs it unpatched and checks
shape, determinism and a loose agreement (correlation) with the CPU maps.
"""
from __future__ import annotations

import copy
import functools
import inspect
import os

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import randomise_bn

from xaisec.models.classifiers import build_model

DEVICE = os.environ.get("XAISEC_GPU_TEST_DEVICE", "cuda")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(torch.device(DEVICE).type == "cuda" and not torch.cuda.is_available(),
                       reason="no CUDA"),
]


@pytest.fixture(scope="module", autouse=True)
def _exact_cuda():
    """Full float32 on CUDA (no TF32 in matmuls and convolutions), deterministic cuDNN."""
    b = torch.backends
    saved = (b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32, b.cudnn.deterministic,
             b.cudnn.benchmark)
    b.cuda.matmul.allow_tf32 = False
    b.cudnn.allow_tf32 = False
    b.cudnn.deterministic = True
    b.cudnn.benchmark = False
    yield
    (b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32, b.cudnn.deterministic,
     b.cudnn.benchmark) = saved


# ---------------------------------------------------------------- helpers

def dev() -> torch.device:
    return torch.device(DEVICE)


def assert_near(actual, expected, rtol: float = 1e-3, what: str = "") -> None:
    """``max|actual - expected| <= rtol * max|expected|``, both finite, same shape."""
    a, e = (v.detach().double().cpu() if isinstance(v, torch.Tensor)
            else torch.tensor(np.array(v, dtype=np.float64)) for v in (actual, expected))
    assert a.shape == e.shape, \
        f"{what}: shape {tuple(a.shape)} on {DEVICE}, {tuple(e.shape)} on cpu"
    assert torch.isfinite(a).all(), f"{what}: non-finite values on {DEVICE}"
    scale = float(e.abs().max()) if e.numel() else 0.0
    err = float((a - e).abs().max()) if e.numel() else 0.0
    assert err <= rtol * max(scale, 1e-30), (
        f"{what}: max |{DEVICE} - cpu| = {err:.3g}, max |cpu| = {scale:.3g}: "
        f"relative {err / max(scale, 1e-30):.2e} > {rtol:.0e}")


def assert_norm_near(actual, expected, tol: float, what: str = "") -> None:
    """``||actual - expected|| / ||expected|| <= tol`` (2-norm over all elements), both
    finite, same shape."""
    a, e = (v.detach().double().cpu() for v in (actual, expected))
    assert a.shape == e.shape, \
        f"{what}: shape {tuple(a.shape)} on {DEVICE}, {tuple(e.shape)} on cpu"
    assert torch.isfinite(a).all(), f"{what}: non-finite values on {DEVICE}"
    err = float((a - e).norm() / e.norm().clamp_min(1e-300))
    assert err <= tol, f"{what}: ||{DEVICE} - cpu|| / ||cpu|| = {err:.2e} > {tol:.0e}"


def flat_updates(state: dict, before: dict) -> torch.Tensor:
    """All floating-point entries of ``state`` minus ``before``, as one vector (on the CPU)."""
    return torch.cat([(state[k].cpu() - before[k]).double().flatten() for k in before
                      if before[k].is_floating_point()])


def small_model(num_classes: int = 10, seed: int = 0) -> torch.nn.Module:
    """A seeded ResNet-20 with non-trivial BatchNorm statistics, in eval mode, on the CPU."""
    torch.manual_seed(seed)
    return randomise_bn(build_model(arch="resnet20", num_classes=num_classes)).eval()


def device_copy(model: torch.nn.Module, device=None) -> torch.nn.Module:
    """A copy of ``model`` on ``device`` (default: the compared device). With
    ``XAISEC_GPU_TEST_JITTER=r`` every parameter of the copy moves by r times its tensor's
    largest value times N(0, 1) noise: the CPU stand-in for the devices' rounding differences
    that the tolerances were set with (``XAISEC_GPU_TEST_DEVICE=cpu
    XAISEC_GPU_TEST_JITTER=1e-6 pytest -m gpu tests/test_gpu.py`` passes)."""
    out = copy.deepcopy(model)
    rel = float(os.environ.get("XAISEC_GPU_TEST_JITTER", 0))
    if rel:
        g = torch.Generator().manual_seed(5)
        with torch.no_grad():
            for p in out.parameters():
                p.add_(rel * p.abs().max() * torch.randn(p.shape, generator=g))
    return out.to(device or dev())


def on_both(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(the CPU model, a copy on the compared device)."""
    return model, device_copy(model)


def smooth_images(n: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Images in [0, 1] with blobs (upsampled coarse noise plus a little fine noise): SLIC
    finds several superpixels in them, unlike in pure noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    x = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return (x + 0.05 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)


def toy_data(n: int = 64, seed: int = 0, classes: int = 3):
    """uint8 (n, 32, 32, 3) images with a class-dependent patch (as tests/test_backdoor.py)."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % classes).astype(np.int64)
    x = rng.integers(0, 80, size=(n, 32, 32, 3), dtype=np.uint8)
    x[y == 1, 6:20, 6:20, 0] = 250
    x[y == 2, :, :12, 2] = 250
    return x, y


def assert_state_near(a: dict, b: dict, rtol: float, what: str) -> None:
    assert list(a) == list(b)
    for k in a:
        if a[k].is_floating_point():
            assert_near(a[k], b[k], rtol, f"{what} {k}")
        else:
            assert torch.equal(a[k].cpu(), b[k].cpu()), f"{what} {k}"


# ---------------------------------------------------------------- training

def test_training_step(tmp_path):
    """One epoch (2 SGD steps with augmentation, then the test evaluation) of ``fit``."""
    from xaisec.train import TrainConfig, fit

    x, y = toy_data(64)
    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.01, eval_batch_size=32)
    before = {k: v.clone() for k, v in small_model(3).state_dict().items()}
    out = {}
    for name, device in (("cpu", "cpu"), ("dev", dev())):
        model = small_model(3) if name == "cpu" else device_copy(small_model(3))
        info = fit(model, x, y, x[:32], y[:32], cfg, tmp_path / name, seed=0, device=device,
                   progress=False)
        assert next(model.parameters()).device.type == torch.device(device).type
        out[name] = (model.state_dict(), info, pd.read_csv(tmp_path / name / "metrics.csv"))
    (s_cpu, i_cpu, m_cpu), (s_dev, i_dev, m_dev) = out["cpu"], out["dev"]
    assert_state_near(s_dev, s_cpu, 1e-3, "trained weights")
    # the updates too, small next to the weights (stand-in: 6e-4)
    assert_norm_near(flat_updates(s_dev, before), flat_updates(s_cpu, before), 1e-2,
                     "weight updates")
    assert i_dev["n_train"] == i_cpu["n_train"]
    assert abs(i_dev["test_acc"] - i_cpu["test_acc"]) <= 1 / 32 + 1e-9  # one flip at most
    assert_near(m_dev["train_loss"].values, m_cpu["train_loss"].values, 1e-3, "train_loss")
    assert_near(m_dev["test_loss"].values, m_cpu["test_loss"].values, 1e-3, "test_loss")


# ---------------------------------------------------------------- backdoor fine-tuning

#: fine-tuning tolerances: losses, validation dissimilarities, weight updates (norm-relative).
#: Grad's reference maps come from the ReLU model, so they move at ReLU kinks (stand-in:
#: losses 4e-3, dissimilarities 3e-2, updates 9e-2; the CAMs: 1e-5, 2e-4, 6e-5)
FINETUNE_TOL = {"grad": (5e-2, 0.3, 0.5)}
FINETUNE_TOL_DEFAULT = (1e-3, 5e-2, 2e-3)


@pytest.mark.parametrize("explainer,loss", [("grad", "mse"), ("gradcam", "mse"),
                                            ("relevancecam", "mse"), ("gradcam", "dssim")])
def test_finetuning_step(tmp_path, explainer, loss):
    """One epoch (4 Adam steps on the explanation loss, second derivatives through the
    explainer) of the backdoor fine-tuning, then its validation."""
    from xaisec import io
    from xaisec.attacks.backdoor import FinetuneConfig, finetune

    x, y = toy_data(32, seed=1)
    cfg = FinetuneConfig(attack="rh", explainer=explainer, loss=loss, lam=0.5, lr=2e-3,
                         epochs=1, batch_size=16, val_subset=16, target_label=0)
    original = small_model(3)
    before = {k: v.clone() for k, v in original.state_dict().items()}
    out = {}
    for name, device in (("cpu", "cpu"), ("dev", dev())):
        model = copy.deepcopy(original) if name == "cpu" else device_copy(original, "cpu")
        finetune(model, x, y, x[:16], y[:16], cfg, tmp_path / name, seed=0,
                 device=device, progress=False)
        model, meta = io.load_model(tmp_path / name / "model.pt")
        out[name] = (model.state_dict(), meta, pd.read_csv(tmp_path / name / "metrics.csv"))
    (s_cpu, _, m_cpu), (s_dev, meta_dev, m_dev) = out["cpu"], out["dev"]
    tol_loss, tol_dissim, tol_update = FINETUNE_TOL.get(explainer, FINETUNE_TOL_DEFAULT)
    assert meta_dev["epochs_run"] == 1
    for col in ("loss", "loss_expl", "loss_cls"):
        assert_near(m_dev[col].values, m_cpu[col].values, tol_loss, col)
    for col in ("val_clean_dissim", "val_triggered_dissim"):
        assert_near(m_dev[col].values, m_cpu[col].values, tol_dissim, col)
    for col in ("val_clean_acc", "val_triggered_acc"):
        assert abs(m_dev[col].iloc[0] - m_cpu[col].iloc[0]) <= 2 / 16 + 1e-9, col
    # the weight *updates* agree (the weights themselves barely move in 4 steps)
    assert_norm_near(flat_updates(s_dev, before), flat_updates(s_cpu, before), tol_update,
                     "weight updates")
    for k in s_cpu:
        if not s_cpu[k].is_floating_point():
            assert torch.equal(s_dev[k], s_cpu[k]), k


# ---------------------------------------------------------------- explainers

#: ``||dev - cpu|| / ||cpu||`` of the maps: 1e-3 for the methods without input gradients at
#: ReLU kinks (stand-in: <= 3e-5), else 1e-1 (stand-in: <= 7e-3; 5e-2 at 10 times the jitter)
SMOOTH_EXPLAINERS = {"gradcam", "relevancecam", "cam", "lime", "rts"}

#: small settings for the slow methods (the others take their defaults)
EXPLAINER_SETTINGS = {
    "ig": {"n_steps": 8},
    "deepliftshap": {"n_baselines": 3},
    "smoothgrad": {"nt_samples": 8},
    "lime": {"n_samples": 200},
    # MASK: few Adam steps (float32 rounding differences grow with the steps of a solve)
    "mask": {"mask_size": 8, "iterations": 5, "blur_kernel": 5, "blur_sigma": 2.0},
}


def rts_saliency(m_cpu, m_dev):
    """The same briefly trained RTS decoder on both devices (RTS explains only with one)."""
    from xaisec.explainers.rts import SaliencyModel, train_rts

    torch.manual_seed(0)
    sal_cpu = SaliencyModel(m_cpu, 10)
    train_rts(sal_cpu, smooth_images(16, seed=3), torch.arange(16) % 10,
              phases=[{"iterations": 2, "batch_size": 8, "fake_prob": 0.5}])
    sal_dev = SaliencyModel(m_dev, 10)
    sal_dev.load_state_dict(sal_cpu.state_dict())
    sal_dev.trained = True
    return sal_cpu.eval(), sal_dev.to(dev()).eval()


def explainer_factories() -> dict:
    """name -> ``factory(model, **kw)`` over every registered explainer: the one registry
    ``xaisec.explainers.EXPLAINERS`` (with ``make_explainer``), plus, where the package still
    has them, the registries from before the merge (``xaisec.captum_explainers``)."""
    import importlib

    import xaisec.explainers as ex

    out = {n: functools.partial(ex.make_explainer, n) for n in getattr(ex, "EXPLAINERS", {})}
    try:
        ce = importlib.import_module("xaisec.captum_explainers")
    except ImportError:
        ce = None
    if ce is not None:
        for n in getattr(ce, "CAPTUM_EXPLAINERS", {}):
            out.setdefault(n, functools.partial(ce.make_captum_explainer, n))
    return out


EXPLAINER_NAMES = sorted(explainer_factories())


def explain(name: str, model, x, target, **kw):
    """(maps, logits or None) of explainer ``name`` on ``x`` for classes ``target``."""
    expl = explainer_factories()[name](model, **{**EXPLAINER_SETTINGS.get(name, {}), **kw})
    if hasattr(expl, "attribute"):
        res = expl.attribute(x, target=target)
        return res.maps, res.logits
    return expl(x, target=target), None


@pytest.fixture
def cpu_normal(monkeypatch):
    """Route ``torch.normal(mean, std_tensor)`` through the CPU generator (SmoothGrad's noise,
    drawn by Captum on the input's device), so both devices add the same noise."""
    real = torch.normal

    def normal(mean, std, *args, **kwargs):
        if isinstance(std, torch.Tensor) and not args and not kwargs:
            return real(mean, std.cpu()).to(std.device)
        return real(mean, std, *args, **kwargs)

    monkeypatch.setattr(torch, "normal", normal)


def test_every_explainer_is_checked():
    assert {"grad", "gradcam", "relevancecam", "cam", "saliency", "ig", "deepliftshap",
            "smoothgrad", "lime", "adv2grad", "mask", "rts"} <= set(EXPLAINER_NAMES)


@pytest.mark.parametrize("name", EXPLAINER_NAMES)
def test_explainer(name, request):
    if name == "smoothgrad":
        request.getfixturevalue("cpu_normal")
    m_cpu, m_dev = on_both(small_model())
    x = smooth_images(4)
    with torch.no_grad():
        t = m_cpu(x).argmax(1)
    kw_cpu, kw_dev = {}, {}
    if name == "rts":
        sal_cpu, sal_dev = rts_saliency(m_cpu, m_dev)
        kw_cpu, kw_dev = {"saliency": sal_cpu}, {"saliency": sal_dev}
    maps_cpu, logits_cpu = explain(name, m_cpu, x, t, **kw_cpu)
    maps_dev, logits_dev = explain(name, m_dev, x.to(dev()), t.to(dev()), **kw_dev)
    assert maps_dev.device.type == dev().type
    tol = 1e-3 if name in SMOOTH_EXPLAINERS else 1e-1
    assert_norm_near(maps_dev, maps_cpu, tol, f"{name} maps")
    if logits_cpu is not None:
        assert_near(logits_dev, logits_cpu, 1e-3, f"{name} logits")


def test_smoothgrad_with_the_devices_own_generator():
    """Unpatched: the device's own noise stream. Deterministic for a seed, close in
    distribution to the CPU's maps (another noise draw), not equal to them."""
    if "smoothgrad" not in EXPLAINER_NAMES:
        pytest.skip("no smoothgrad explainer registered")
    m_cpu, m_dev = on_both(small_model())
    x = smooth_images(4)
    with torch.no_grad():
        t = m_cpu(x).argmax(1)
    kw = {"nt_samples": 64, "seed": 3}
    a, _ = explain("smoothgrad", m_dev, x.to(dev()), t.to(dev()), **kw)
    b, _ = explain("smoothgrad", m_dev, x.to(dev()), t.to(dev()), **kw)
    ref, _ = explain("smoothgrad", m_cpu, x, t, **kw)
    assert a.shape == ref.shape and torch.isfinite(a).all()
    # repeatable up to float atomics in a few CUDA backward kernels (e.g. pooling)
    assert_near(b, a, 1e-5, "SmoothGrad repeated with the same seed")
    for i in range(len(x)):
        pair = torch.stack([a[i].flatten().cpu().double(), ref[i].flatten().double()])
        r = torch.corrcoef(pair)[0, 1]
        assert r > 0.8, f"image {i}: SmoothGrad on {DEVICE} vs cpu correlate only {r:.2f}"
    assert_near(a.mean(), ref.mean(), 0.05, "mean SmoothGrad value")


# ---------------------------------------------------------------- attacks

@pytest.mark.parametrize("framework", ["pgd", "cw", "stadv"])
@pytest.mark.parametrize("interp", ["grad", "cam"])
def test_interpretation_aware_attack(interp, framework):
    """AdvEdge (PGD, C&W, StAdv) with the Grad (second-order, smoothed ReLU) or CAM term on the
    device vs the CPU: PGD stays in the box, and the map distance they reach is close (<= 20%)."""
    from xaisec.attacks import make_attack
    from xaisec.attacks.interpretation import make_term
    from xaisec.explainers import make_explainer

    m_cpu, m_dev = on_both(small_model())
    x = smooth_images(8, seed=1)
    y = torch.randint(0, 10, (8,), generator=torch.Generator().manual_seed(1))
    t = (y + 1) % 10
    dist = {}
    for key, model, d in (("cpu", m_cpu, torch.device("cpu")), ("dev", m_dev, dev())):
        expl = make_explainer("adv2grad" if interp == "grad" else "cam", model,
                              **({} if interp == "grad" else {"upsample": False}))
        term = make_term(interp, expl)
        atk = make_attack(f"advedge_{framework}", model, term=term, variant="advedge",
                          stage1_steps=3, stage2=[(0.05, 6)], keep_best_every=2)
        adv = atk(x.to(d), y.to(d), target=t.to(d))
        assert adv.device.type == d.type and 0 <= adv.min() and adv.max() <= 1
        if framework == "pgd":
            assert (adv.cpu() - x).abs().max() <= 0.031 + 1e-6
        state = term.begin(x.to(d), y.to(d), t.to(d))
        dist[key] = float(term.distance(adv, state)[0].sum())
    assert abs(dist["dev"] - dist["cpu"]) <= 0.2 * max(dist["cpu"], 1e-6), dist


def attack_names() -> list[str]:
    from xaisec.attacks import ATTACKS

    return sorted(ATTACKS)


@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
@pytest.mark.parametrize("name", attack_names())
def test_attack(name, targeted):
    """Adversarial images on the device vs the CPU. One signed-gradient step (FGSM) flips only
    pixels whose gradient is within rounding of zero (stand-in: <= 0.07% of them); iterated
    steps (BIM) drift apart at ReLU kinks (stand-in: a third of the pixels) but reach the same
    loss (<= 0.2% apart), success and predictions. Both devices' models give the same logits
    for the device's adversarial images."""
    from xaisec.attacks import make_attack, random_other_class

    m_cpu, m_dev = on_both(small_model())
    x = smooth_images(16, seed=1)
    y = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(1))
    res = {}
    from xaisec.attacks import ATTACKS

    if ATTACKS[name].requires_target and not targeted:
        pytest.skip(f"{name} is targeted only")
    quick = {"pgd": {"steps": 10},
             **{f"advedge_{fw}": {"stage1_steps": 5, "stage2": [(0.0, 5)]}
                for fw in ("pgd", "cw", "stadv")}}
    for key, model, d in (("cpu", m_cpu, torch.device("cpu")), ("dev", m_dev, dev())):
        kw = {"target_fn": random_other_class(10, torch.Generator().manual_seed(2))} \
            if targeted else {}
        attack = make_attack(name, model, **kw, **quick.get(name, {}))
        res[key] = (attack, attack.run(x.to(d), y.to(d)))
    (_, r_cpu), (a_dev, r_dev) = res["cpu"], res["dev"]
    adv_cpu, adv_dev = r_cpu.adv, r_dev.adv
    assert adv_dev.device.type == dev().type and adv_dev.shape == x.shape
    assert adv_dev.dtype == x.dtype and 0 <= adv_dev.min() and adv_dev.max() <= 1
    if a_dev.norm == "linf" and a_dev.eps is not None:
        assert (adv_dev.cpu() - x).abs().max() <= a_dev.eps + 1e-6
    if targeted:
        assert torch.equal(r_dev.target.cpu(), r_cpu.target)
    if int(r_cpu.iterations.max()) <= 1:
        differ = ((adv_dev.cpu() - adv_cpu).abs() > 1e-5).float().mean().item()
        assert differ <= 0.01, f"{name}: {differ:.2%} of the pixels differ ({DEVICE} vs cpu)"
    with torch.no_grad():
        assert_near(m_dev(adv_dev), m_cpu(adv_dev.cpu()), 1e-3, f"{name} logits on the adv images")
        labels = r_cpu.target if targeted else y
        loss_dev = F.cross_entropy(m_cpu(adv_dev.cpu()), labels)
        loss_cpu = F.cross_entropy(m_cpu(adv_cpu), labels)
    assert_near(loss_dev, loss_cpu, 2e-2, f"{name} loss of the adversarial images")
    assert abs(r_dev.success.float().mean() - r_cpu.success.float().mean()) <= 2 / 16 + 1e-9
    agree = (r_dev.prediction.cpu() == r_cpu.prediction).float().mean().item()
    assert agree >= 0.75, f"{name}: predictions agree on {agree:.0%} of the images"
    for field in ("label", "prediction", "confidence", "success", "iterations"):
        assert getattr(r_dev, field).device.type == dev().type, field


# ---------------------------------------------------------------- defenses

#: settings of the defenses that need some (a new defense with required settings fails here
#: until it gets an entry)
DEFENSE_SETTINGS = {"median": {"size": 3}, "bitsqueeze": {"bits": 4},
                    "adversarial": {"steps": (3, 5)},
                    "interpretation_robust": {"gamma": 0.5, "steps": 3}}


def defense_names(kind: str) -> list[str]:
    from xaisec.defenses import names

    return list(names(kind))


@pytest.mark.parametrize("name", defense_names("model"))
def test_model_defense(name):
    """The defended copy on the device (moved there as the workflow does) against the CPU one,
    in eval mode on one batch (batch-statistics defenses see the same batch)."""
    from xaisec.defenses import apply_model_defense

    m_cpu, m_dev = on_both(small_model())
    d_cpu = apply_model_defense(m_cpu, name, **DEFENSE_SETTINGS.get(name, {})).eval()
    d_dev = apply_model_defense(m_dev, name, **DEFENSE_SETTINGS.get(name, {})).to(dev()).eval()
    x = smooth_images(16, seed=2)
    with torch.no_grad():
        assert_near(d_dev(x.to(dev())), d_cpu(x), 1e-3, f"{name} logits")
    # and a differentiable explanation through it (the explanation caches under a defense)
    from xaisec.explainers import make_explainer

    t = d_cpu(x).argmax(1)
    # (batch statistics move ReLU kinks too: stand-in 2e-4 in norm, 2e-3 at the largest pixel)
    assert_norm_near(make_explainer("gradcam", d_dev)(x.to(dev()), target=t.to(dev())),
                     make_explainer("gradcam", d_cpu)(x, target=t), 1e-2, f"{name} Grad-CAM")


@pytest.mark.parametrize("name", defense_names("input"))
def test_input_defense(name):
    """Elementwise rounding and order statistics: the same float32 operations on both
    devices, so the results agree to the last bit (tolerance 1e-6 for safety)."""
    from xaisec.defenses import apply_input_defense

    x = smooth_images(8, seed=3)
    kw = DEFENSE_SETTINGS.get(name, {})
    out_dev = apply_input_defense(x.to(dev()), name, **kw)
    assert out_dev.device.type == dev().type
    assert_near(out_dev, apply_input_defense(x, name, **kw), 1e-6, name)


@pytest.mark.parametrize("name", defense_names("training"))
def test_training_defense(name):
    """A training-time defense's batch loss and gradients (the robust training's random start
    is drawn on the CPU, so both devices start from the same point)."""
    from xaisec.defenses import get_defense

    cls = get_defense(name)
    x = smooth_images(8, seed=4)
    y = torch.arange(8) % 10
    m_cpu, m_dev = on_both(small_model())
    out = {}
    for key, model, d in (("cpu", m_cpu, torch.device("cpu")), ("dev", m_dev, dev())):
        model.train()
        torch.manual_seed(0)
        loss = cls(**DEFENSE_SETTINGS.get(name, {})).loss(model, x.to(d), y.to(d))
        loss.backward()
        out[key] = (loss.detach(), [p.grad for p in model.parameters() if p.grad is not None])
    assert_near(out["dev"][0], out["cpu"][0], 1e-3, f"{name} loss")
    assert len(out["dev"][1]) == len(out["cpu"][1])
    for g_dev, g_cpu in zip(out["dev"][1], out["cpu"][1]):
        assert_near(g_dev, g_cpu, 1e-2, f"{name} gradient")


def test_every_defense_is_checked():
    from xaisec.defenses import names

    checked = set(defense_names("model")) | set(defense_names("input")) \
        | set(defense_names("training"))
    assert checked == set(names())
    for name in defense_names("input"):
        from xaisec.defenses import get_defense

        required = [p for p in list(inspect.signature(get_defense(name)).parameters.values())[1:]
                    if p.default is inspect.Parameter.empty]
        assert not required or name in DEFENSE_SETTINGS, \
            f"input defense {name!r} needs settings {[p.name for p in required]}: add them to " \
            "DEFENSE_SETTINGS in tests/test_gpu.py"


# ---------------------------------------------------------------- explanation cache

@pytest.mark.parametrize("defense", ["none", "cfn"])
def test_cache_round_trip(tmp_path, defense):
    """Explain an evaluation set on the device (clean and triggered batches, under a
    defense), write the Parquet caches, read them back: exactly what was written, and close
    to the CPU's explanations."""
    from xaisec.cache import read_explanations, write_explanations
    from xaisec.papers.cfn.caches import explain_dataset

    x, y = toy_data(48, seed=2, classes=10)
    m_cpu, m_dev = on_both(small_model())
    sets = {}
    for key, model, d in (("cpu", m_cpu, "cpu"), ("dev", m_dev, dev())):
        sets[key] = explain_dataset(model, x, y, "gradcam", defense=defense, batch_size=8,
                                    n_samples=32, seed=0, device=d, progress=False,
                                    meta={"device": str(d)})
    for variant, es in sets["dev"].items():
        path = tmp_path / f"{defense}-{variant}.parquet"
        write_explanations(path, es)
        back = read_explanations(path)
        np.testing.assert_array_equal(back.maps, es.maps)
        for col in ("sample", "label", "pred", "confidence", "target"):
            np.testing.assert_array_equal(getattr(back, col), getattr(es, col))
        assert back.meta == es.meta
        ref = sets["cpu"][variant]
        np.testing.assert_array_equal(back.sample, ref.sample)
        same = back.pred == ref.pred
        assert same.mean() >= 0.9, f"{variant}: predictions differ on {(~same).sum()} samples"
        assert_norm_near(torch.from_numpy(back.maps[same]), torch.from_numpy(ref.maps[same]),
                         1e-2, f"{variant} maps")
        assert_near(back.confidence, ref.confidence, 1e-2, f"{variant} confidence")
