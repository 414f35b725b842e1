"""AdvEdge part 2: the C&W and StAdv frameworks (tests that would catch a fake or broken
attack: a warp that is not bilinear, an edge gate that leaks, an interpretation term that does
nothing, a batch that changes the result)."""
import copy

import pytest
import torch
import torch.nn.functional as F

from xaisec.attacks import InterpretationCW, InterpretationStAdv, make_attack
from xaisec.attacks import advedge as advedge_mod
from xaisec.attacks.edges import edge_weights, sobel_edges
from xaisec.attacks.flow import flow_grid, flow_loss, flow_warp
from xaisec.attacks.interpretation import make_term
from xaisec.explainers import make_explainer
from xaisec.models.classifiers import build_model

FAST = dict(stage1_steps=4, stage2=[(0.01, 3), (0.05, 3)], keep_best_every=2)
CLASSES = {"cw": InterpretationCW, "stadv": InterpretationStAdv}


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = build_model(arch="resnet20", num_classes=10).eval()
    x = torch.rand(3, 3, 32, 32)
    y = torch.tensor([0, 3, 5])
    t = (y + torch.tensor([1, 4, 2])) % 10
    return model, x, y, t


def term(model, interp="cam"):
    e = make_explainer("adv2grad", model) if interp == "grad" else \
        make_explainer("cam", model, upsample=False)
    return make_term(interp, e)


# ---------------------------------------------------------------- the flow field

def test_zero_flow_returns_the_input_exactly():
    x = torch.rand(2, 3, 9, 11)
    assert torch.equal(flow_warp(x, torch.zeros(2, 2, 9, 11)), x)


def test_integer_flow_is_a_pixel_shift_of_the_interior():
    x = torch.rand(1, 3, 8, 10, dtype=torch.float64)
    f = torch.zeros(1, 2, 8, 10, dtype=torch.float64)
    f[:, 0], f[:, 1] = 2, -1            # sample 2 px to the right and 1 px up
    out = flow_warp(x, f)
    assert torch.equal(out[:, :, 1:, :-2], x[:, :, :-1, 2:])
    # at the border the position is clamped: the last column repeats
    assert torch.equal(out[:, :, 1:, -1], x[:, :, :-1, -1])


def test_warp_equals_grid_sample_with_border_padding_and_aligned_corners():
    torch.manual_seed(1)
    x = torch.rand(2, 3, 7, 9, dtype=torch.float64)
    f = 2.5 * torch.randn(2, 2, 7, 9, dtype=torch.float64)
    ref = F.grid_sample(x, flow_grid(f), mode="bilinear", padding_mode="border",
                        align_corners=True)
    torch.testing.assert_close(flow_warp(x, f), ref, rtol=0, atol=1e-12)
    # and its gradient w.r.t. the flow (inside the image) is grid_sample's
    f = (0.3 * torch.randn(2, 2, 7, 9, dtype=torch.float64)).requires_grad_(True)
    (g,) = torch.autograd.grad(flow_warp(x, f).pow(2).sum(), f)
    (g_ref,) = torch.autograd.grad(F.grid_sample(x, flow_grid(f), mode="bilinear",
                                                 padding_mode="border",
                                                 align_corners=True).pow(2).sum(), f)
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    torch.testing.assert_close(g[inner], g_ref[inner], rtol=1e-9, atol=1e-9)


def _loop_flow_loss(f, neighbours, eps=1e-8):
    offs = {"paper": [(-1, 0), (1, 0), (0, -1), (0, 1)],
            "code": [(-1, -1), (-1, 1), (1, -1), (1, 1)]}[neighbours]
    n, _, h, w = f.shape
    out = torch.zeros(n, dtype=f.dtype)
    for b in range(n):
        for i in range(h):
            for j in range(w):
                for dy, dx in offs:
                    qi, qj = i + dy, j + dx
                    if neighbours == "paper" and not (0 <= qi < h and 0 <= qj < w):
                        continue                              # outside: no neighbour
                    qi, qj = min(max(qi, 0), h - 1), min(max(qj, 0), w - 1)   # replicate
                    d = f[b, :, i, j] - f[b, :, qi, qj]
                    out[b] += torch.sqrt((d * d).sum() + eps)
    return out


@pytest.mark.parametrize("neighbours", ["paper", "code"])
def test_flow_loss_equals_a_loop_over_neighbours(neighbours):
    torch.manual_seed(2)
    f = torch.randn(2, 2, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(flow_loss(f, neighbours), _loop_flow_loss(f, neighbours))
    assert flow_loss(torch.zeros(1, 2, 5, 6), "paper").item() == pytest.approx(
        2 * (5 * 5 + 4 * 6) * 1e-4, rel=1e-3)     # sqrt(eps) per ordered pair


# ---------------------------------------------------------------- C&W

def test_cw_with_only_the_distance_returns_the_input(setup):
    model, x, y, t = setup
    atk = InterpretationCW(model, cls_weight=0.0, prd_weight=0.0, stage1_steps=5,
                           stage2=[(0.0, 5)], keep_best=False)
    assert torch.equal(atk(x, y, target=t), x)
    # with the classification term on, it moves
    moved = InterpretationCW(model, stage1_steps=5, stage2=[(0.0, 5)], keep_best=False)
    assert not torch.equal(moved(x, y, target=t), x)


@pytest.mark.parametrize("fw", ["cw", "stadv"])
def test_advedge_plus_leaves_gated_off_pixels_untouched(setup, fw):
    model, x, y, t = setup
    for edge_on in (("flow", "pixels") if fw == "stadv" else (None,)):
        kw = {} if edge_on is None else {"edge_on": edge_on}
        adv = CLASSES[fw](model, term=term(model), variant="advedge+", phi=0.1, **FAST,
                          **kw)(x, y, target=t)
        closed = (sobel_edges(x) <= 0.1).expand_as(x)
        assert closed.any() and (~closed).any()
        assert torch.equal(adv[closed], x[closed]), (fw, edge_on)
        assert (adv[~closed] != x[~closed]).any()
        assert adv.min() >= 0 and adv.max() <= 1


def test_cw_code_edge_stages_move_gated_pixels_in_stage_2(setup):
    model, x, y, t = setup
    adv = InterpretationCW(model, term=term(model), variant="advedge+", edge_stages="code",
                           keep_best=False, **{**FAST, "keep_best_every": 1})(x, y, target=t)
    closed = (sobel_edges(x) <= 0.1).expand_as(x)
    assert (adv[closed] != x[closed]).any()


@pytest.mark.parametrize("fw", ["cw", "stadv"])
def test_all_ones_edges_and_negative_phi_equal_adv2(setup, fw, monkeypatch):
    model, x, y, t = setup
    base = CLASSES[fw](model, term=term(model), variant="adv2", **FAST)(x, y, target=t)
    gate = CLASSES[fw](model, term=term(model), variant="advedge+", phi=-1.0,
                       **FAST)(x, y, target=t)
    assert torch.equal(gate, base)
    monkeypatch.setattr(advedge_mod, "sobel_edges", lambda z: torch.ones_like(z[:, :1]))
    ones = CLASSES[fw](model, term=term(model), variant="advedge", **FAST)(x, y, target=t)
    assert torch.equal(ones, base)


@pytest.mark.parametrize("fw,interp", [("cw", "grad"), ("cw", "cam"), ("stadv", "grad"),
                                       ("stadv", "cam")])
def test_batch_equals_single_images(setup, fw, interp):
    """In float64: Adam normalises each coordinate's gradient, so float32 rounding that differs
    between batched and single convolutions would be amplified into visible differences; any
    coupling between the samples would not vanish in float64."""
    model, x, y, t = setup
    model, x = copy.deepcopy(model).double(), x.double()
    atk = CLASSES[fw](model, term=term(model, interp), variant="advedge", smoothing="paper",
                      **FAST)
    batch = atk.run(x, y, target=t)
    for i in range(len(x)):
        one = atk.run(x[i:i + 1], y[i:i + 1], target=t[i:i + 1])
        torch.testing.assert_close(one.adv[0], batch.adv[i], rtol=1e-9, atol=1e-9)
        assert one.iterations[0] == batch.iterations[i]


@pytest.mark.parametrize("fw", ["cw", "stadv"])
def test_the_interpretation_term_pulls_the_map_back(setup, fw):
    """c > 0 must lower the final map distance against c = 0 (a term that does nothing
    would leave it equal)."""
    model, x, y, t = setup
    tm = term(model, "cam")
    kw = dict(stage1_steps=30, keep_best=False)
    off = CLASSES[fw](model, term=tm, stage2=[(0.0, 30)], **kw)(x, y, target=t)
    on = CLASSES[fw](model, term=tm, stage2=[(50.0, 30)], **kw)(x, y, target=t)
    state = tm.begin(x, y, t)
    d_off, _ = tm.distance(off, state)
    d_on, _ = tm.distance(on, state)
    assert d_on.mean() < 0.8 * d_off.mean()


def test_map_reduction_mean_divides_by_the_map_size(setup):
    model, x, y, t = setup
    tm = term(model, "cam")
    state = tm.begin(x, y, t)
    a = InterpretationCW(model, term=tm, map_reduction="mean")
    b = InterpretationCW(model, term=tm)
    la, _ = a.stage2_loss(x, state, t, 1.0, 0, 1, None, 0)
    lb, _ = b.stage2_loss(x, state, t, 1.0, 0, 1, None, 0)
    _, l_int, _ = tm.loss(x, state)
    torch.testing.assert_close(lb - la, l_int.detach() * (1 - 1 / state["m_t"][0].numel()))


def test_registered_and_without_budget(setup):
    model, x, y, t = setup
    assert isinstance(make_attack("advedge_cw", model, term=term(model)), InterpretationCW)
    assert isinstance(make_attack("advedge_stadv", model), InterpretationStAdv)
    with pytest.raises(ValueError, match="no perturbation budget"):
        InterpretationCW(model, eps=0.03)
    with pytest.raises(ValueError, match="targeted"):
        InterpretationStAdv(model, **FAST)(x, y)
    with pytest.raises(ValueError, match="edge_on"):
        InterpretationStAdv(model, edge_on="both")


def test_stadv_flow_init_is_seeded_per_sample(setup):
    model, x, *_ = setup
    atk = InterpretationStAdv(model, flow_init=0.2)
    f = atk.initial_flow(x)
    assert f.shape == (3, 2, 32, 32) and f.abs().max() <= 0.1
    torch.testing.assert_close(atk.initial_flow(x[1:2])[0], f[1])
    assert not torch.equal(f[0], f[1])


def test_edge_weights_shared_with_pgd():
    e = torch.tensor([[[[0.0, 0.2]]]])
    assert edge_weights(e, "advedge+", 0.1).flatten().tolist() == [0, 1]


@pytest.mark.parametrize("fw", ["cw", "stadv"])
def test_mask_term_runs_in_the_optimizer_frameworks(setup, fw):
    """MASK's bi-level term (unrolled mask steps, re-solves, keep-the-best on the mask
    distance) in C&W and StAdv: the map term changes the outcome; AdvEdge+ still never moves
    a gated pixel."""
    model, x, y, t = setup
    expl = make_explainer("mask", model, mask_size=4, iterations=8, blur_kernel=3,
                          blur_sigma=1.0)
    kw = dict(stage1_steps=2, keep_best_every=1, variant="advedge+")
    on = CLASSES[fw](model, term=make_term("mask", expl, resolve_every=2),
                     stage2=[(100.0, 3)], **kw).run(x, y, target=t)
    off = CLASSES[fw](model, term=make_term("mask", expl, resolve_every=2),
                      stage2=[(0.0, 3)], **kw).run(x, y, target=t)
    assert (on.adv - off.adv).abs().max() > 0
    closed = (sobel_edges(x) <= 0.1).expand_as(x)
    assert torch.equal(on.adv[closed], x[closed])
    assert (on.iterations >= 2).all() and (on.iterations <= 5).all()


def test_rts_term_runs_in_cw(setup):
    """RTS's term (map distance plus the encoder's NLL) in C&W: the encoder term alone (c = 0)
    already changes the result against no interpreter term."""
    from xaisec.explainers.rts import SaliencyModel

    model, x, y, t = setup
    torch.manual_seed(0)
    sal = SaliencyModel(model, 10)
    sal.trained = True                  # the attack's wiring is tested, not the saliency model
    tm = make_term("rts", make_explainer("rts", model, saliency=sal))
    kw = dict(stage1_steps=2, stage2=[(0.0, 3)], keep_best=False)
    with_enc = InterpretationCW(model, term=tm, **kw)(x, y, target=t)
    plain = InterpretationCW(model, term=None, **kw)(x, y, target=t)
    assert (with_enc - plain).abs().max() > 0
