"""AdvEdge part 1: edge maps, the ADV2 Grad interpreter, the PGD framework with ADV2, AdvEdge
and AdvEdge+ (tests that would catch a fake or broken attack)."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from xaisec.attacks import InterpretationPGD, PGD, make_attack
from xaisec.attacks import advedge as advedge_mod
from xaisec.attacks.edges import edge_weights, sobel_edges
from xaisec.attacks.interpretation import make_term
from xaisec.explainers import make_explainer
from xaisec.models.classifiers import build_model

torchattacks = pytest.importorskip("torchattacks")


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = build_model(arch="resnet20", num_classes=10).eval()
    x = torch.rand(4, 3, 32, 32)
    y = torch.tensor([0, 3, 5, 7])
    t = (y + torch.tensor([1, 4, 2, 9])) % 10
    return model, x, y, t


def grad_term(model, of="logit"):
    return make_term("grad", make_explainer("adv2grad", model, of=of))


FAST = dict(stage1_steps=2, stage2=[(0.01, 3), (0.05, 3)], keep_best_every=2)


def test_edges_equal_scikit_image():
    skfilters = pytest.importorskip("skimage.filters")
    x = torch.rand(3, 3, 19, 24, dtype=torch.float64)
    ours = sobel_edges(x)[:, 0].numpy()
    ref = np.stack([skfilters.sobel(xi.mean(0).numpy()) for xi in x])
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_edge_weights_per_variant():
    e = torch.tensor([[[[0.0, 0.05, 0.1, 0.3]]]])
    assert torch.equal(edge_weights(e, "adv2"), torch.ones_like(e))
    assert torch.equal(edge_weights(e, "advedge"), e)
    assert edge_weights(e, "advedge+", 0.1).flatten().tolist() == [0, 0, 0, 1]
    with pytest.raises(ValueError, match="unknown variant"):
        edge_weights(e, "adv3")


def test_plain_adv2_equals_torchattacks_pgd(setup):
    model, x, y, t = setup
    ours = InterpretationPGD(model, eps=0.031, term=grad_term(model), stage1_steps=0,
                             stage2=[(0.0, 10)], smoothing="none", keep_best=False)(x, y, target=t)
    ref = torchattacks.PGD(model, eps=0.031, alpha=1 / 255, steps=10, random_start=False)
    ref.set_mode_targeted_by_label(quiet=True)
    torch.testing.assert_close(ours, ref(x, t))
    plain = PGD(model, eps=0.031, steps=10)(x, y, target=t)
    torch.testing.assert_close(plain, ref(x, t))


def test_interpretation_term_changes_the_result(setup):
    """c > 0 must move the attack elsewhere than c = 0 (an inert interpretation term fails)."""
    model, x, y, t = setup
    kw = dict(stage1_steps=2, smoothing="none", keep_best=False)
    a0 = InterpretationPGD(model, term=grad_term(model), stage2=[(0.0, 6)], **kw)(x, y, target=t)
    a1 = InterpretationPGD(model, term=grad_term(model), stage2=[(50.0, 6)], **kw)(x, y, target=t)
    assert (a0 - a1).abs().max() > 1e-3


def test_all_ones_edges_and_negative_phi_equal_adv2(setup, monkeypatch):
    model, x, y, t = setup
    adv2 = InterpretationPGD(model, term=grad_term(model), variant="adv2", **FAST)(x, y, target=t)
    plus = InterpretationPGD(model, term=grad_term(model), variant="advedge+", phi=-1.0,
                             **FAST)(x, y, target=t)
    assert torch.equal(plus, adv2)
    monkeypatch.setattr(advedge_mod, "sobel_edges", lambda x: torch.ones_like(x[:, :1]))
    edge = InterpretationPGD(model, term=grad_term(model), variant="advedge", **FAST)(x, y,
                                                                                    target=t)
    assert torch.equal(edge, adv2)


@pytest.mark.parametrize("variant", ["adv2", "advedge", "advedge+"])
def test_budget_box_and_gate(setup, variant):
    model, x, y, t = setup
    res = InterpretationPGD(model, term=grad_term(model), variant=variant, phi=0.1,
                            **FAST).run(x, y, target=t)
    adv = res.adv
    assert adv.min() >= 0 and adv.max() <= 1
    assert (adv - x).abs().max() <= 0.031 + 1e-6
    assert (adv - x).abs().max() > 0
    if variant == "advedge+":
        closed = (sobel_edges(x) <= 0.1).expand_as(x)
        assert closed.any()
        assert torch.equal(adv[closed], x[closed])
    assert res.targeted and res.iterations.min() >= 2


def test_code_edge_stages_move_gated_pixels_in_stage_2(setup):
    model, x, y, t = setup
    adv = InterpretationPGD(model, term=grad_term(model), variant="advedge+", phi=0.1,
                            edge_stages="code", keep_best=False,
                            stage1_steps=2, stage2=[(0.01, 4)])(x, y, target=t)
    closed = (sobel_edges(x) <= 0.1).expand_as(x)
    assert (adv[closed] != x[closed]).any()


@pytest.mark.parametrize("interp", ["grad", "cam"])
def test_batch_equals_single_images(setup, interp):
    """In float64 (in float32, batched and single convolutions round differently and signed
    steps amplify that): every per-sample draw, edge map, map and keep-the-best decision is
    the sample's own."""
    model, x, y, t = setup
    model, x = model.double(), x.double()
    try:
        expl = make_explainer("adv2grad" if interp == "grad" else "cam", model,
                              **({} if interp == "grad" else {"upsample": False}))
        atk = InterpretationPGD(model, term=make_term(interp, expl), variant="advedge", **FAST)
        whole = atk(x, y, target=t)
        alone = torch.cat([atk(x[i:i + 1], y[i:i + 1], target=t[i:i + 1])
                           for i in range(len(x))])
    finally:
        model.float()
    torch.testing.assert_close(whole, alone, rtol=0, atol=1e-9)


def test_label_smoothing_spreads_over_c_minus_1_or_9():
    logits = torch.zeros(2, 100)
    t = torch.tensor([3, 7])
    conf = torch.tensor([0.96, 0.99])
    paper = advedge_mod.smoothed_ce(logits, t, conf, 99)
    code = advedge_mod.smoothed_ce(logits, t, conf, 9)
    # uniform logits: paper's soft labels sum to 1 -> CE = log(100); code's do not
    torch.testing.assert_close(paper, torch.full((2,), np.log(100.0)))
    assert (code > paper).all()


def test_requires_a_target(setup):
    model, x, y, _ = setup
    with pytest.raises(ValueError, match="targeted"):
        InterpretationPGD(model, term=grad_term(model), **FAST)(x, y)
    with pytest.raises(ValueError, match="variant"):
        InterpretationPGD(model, variant="edge")


def test_registered(setup):
    model, x, y, t = setup
    atk = make_attack("advedge_pgd", model, eps=0.031, term=None, stage1_steps=3, stage2=())
    adv = atk(x, y, target=t)
    torch.testing.assert_close(adv, PGD(model, eps=0.031, steps=3)(x, y, target=t))


# ---------------------------------------------------------------- the Grad interpreter

def _archs():
    from xaisec.catalog import CIFAR_ARCHS
    return list(CIFAR_ARCHS)


def _grad_loss(model, x, t, m_t, of="loss"):
    expl = make_explainer("adv2grad", model, of=of)

    def loss(z):
        m = expl.attribute(z, target=t, create_graph=True).maps
        return ((m - m_t) ** 2).sum()

    return loss


@pytest.mark.parametrize("arch", ["resnet20", "densenet40"])
def test_grad_second_order_matches_finite_differences(arch):
    """The attack's gradient of the Grad interpretation loss (a second derivative of the model)
    equals central finite differences of the loss in float64. A smooth activation (Softplus)
    makes the map a differentiable function of the input, so autograd and finite differences
    must agree; with ReLU the attack uses the smoothed backward (next test). Architectures
    with max-pooling (VGG, Inception) are left out here: the gradient map jumps where a
    pooling window's argmax switches, so finite differences across such a switch are not a
    derivative (the next test covers them)."""
    torch.manual_seed(1)
    model = build_model(arch=arch, num_classes=10, activation="softplus", beta=5.0).double()
    model.eval()
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    t = torch.tensor([2])
    m_t = torch.rand(1, 1, 16, 16, dtype=torch.float64)
    loss = _grad_loss(model, x, t, m_t)
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(loss(xr), xr)
    assert g.abs().max() > 0
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        v = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        h = 1e-6
        fd = (loss(x + h * v) - loss(x - h * v)) / (2 * h)
        # abs and max over channels are kinks of the map: a crossing within h moves the
        # difference quotient by a little
        torch.testing.assert_close((g * v).sum(), fd, rtol=2e-2, atol=1e-9)


@pytest.mark.parametrize("arch", _archs())
def test_grad_second_order_is_nonzero_under_the_smoothed_relu(arch):
    """With ReLU the second derivative is zero (an attack on Grad would not move); under
    smooth_relu_mode (modules and functional ReLUs) it is finite and non-zero."""
    from xaisec.models.activations import smooth_relu_mode

    torch.manual_seed(1)
    model = build_model(arch=arch, num_classes=10).eval()
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    loss = _grad_loss(model, x, torch.tensor([2, 5]), torch.rand(2, 1, 16, 16))
    (plain,) = torch.autograd.grad(loss(x), x)
    with smooth_relu_mode(1e-4):
        (smooth,) = torch.autograd.grad(loss(x), x)
    assert torch.isfinite(smooth).all() and smooth.abs().amax(dim=(1, 2, 3)).min() > 0
    assert not torch.allclose(plain, smooth)


def test_grad_map_paper_vs_code_and_pooling(setup):
    model, x, y, t = setup
    logit = make_explainer("adv2grad", model, of="logit")(x, target=y)
    loss = make_explainer("adv2grad", model, of="loss")(x, target=y)
    assert logit.shape == (4, 1, 16, 16) and loss.shape == (4, 1, 16, 16)
    assert float(logit.min()) == 0.0 and float(logit.amax(dim=(1, 2, 3)).min()) == 1.0
    assert not torch.allclose(logit, loss)
    assert make_explainer("adv2grad", model, pool=4)(x, target=y).shape == (4, 1, 8, 8)


def _tiny_cnn(seed=0):
    torch.manual_seed(seed)

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.normalize = nn.Identity()
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                          nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.linear = nn.Linear(16, 10)
            self.gradcam_layer = "features"

        def forward(self, x):
            return self.linear(self.pool(self.features(self.normalize(x))).flatten(1))

    return Tiny().eval()


def test_mask_attack_runs_the_bilevel_loop(setup):
    """MASK: L2 steps with the per-sample search, unrolled mask steps, re-solves; the result
    stays in the box, and the map term changes the outcome."""
    model = _tiny_cnn()
    _, x, y, t = setup
    expl = make_explainer("mask", model, mask_size=4, iterations=10, blur_kernel=3,
                          blur_sigma=1.0)
    kw = dict(stage1_steps=1, step="l2", keep_best_every=1, max_step=0.5, confidence=0.0)
    res = InterpretationPGD(model, term=make_term("mask", expl, resolve_every=2),
                            stage2=[(1.0, 3)], **kw).run(x, y, target=t)
    assert (res.adv - x).abs().max() <= 0.031 + 1e-6 and res.adv.min() >= 0
    none = InterpretationPGD(model, term=make_term("mask", expl, resolve_every=2),
                             stage2=[(0.0, 3)], **kw).run(x, y, target=t)
    assert (res.adv - none.adv).abs().max() > 0
    batch = InterpretationPGD(model, term=make_term("mask", expl), stage2=[(1.0, 2)],
                              **{**kw, "search": "batch"})(x, y, target=t)
    assert (batch - x).abs().max() <= 0.031 + 1e-6


@pytest.mark.bench
def test_bench_pgd_without_interpretation_vs_torchattacks(setup):
    """Iterations per second of the framework with the interpretation term off (stage 2 with
    c = 0, no smoothing, no keep-the-best) against torchattacks.PGD, same model and batch."""
    import time

    model, _, _, _ = setup
    x = torch.rand(32, 3, 32, 32)
    y = torch.randint(0, 10, (32,))
    t = (y + 1) % 10
    steps = 20
    ours = InterpretationPGD(model, term=None, stage1_steps=0, stage2=[(0.0, steps)],
                             smoothing="none", keep_best=False)
    ref = torchattacks.PGD(model, eps=0.031, alpha=1 / 255, steps=steps, random_start=False)
    ref.set_mode_targeted_by_label(quiet=True)
    for name, fn in (("xaisec", lambda: ours(x, y, target=t)), ("torchattacks", lambda: ref(x, t))):
        fn()
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        print(f"{name}: {steps / dt:.1f} iterations/s (batch 32, ResNet-20, CPU)")
