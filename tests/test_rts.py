"""RTS (real-time saliency, AdvEdge paper Section IV-E): the saliency model, its training, its
checkpoints and the explainer, on a toy task small enough for the CPU.

Toy task: 16x16 grey images holding one 6x6 square of pure red, green or blue; the class is
the colour. The classifier (also the saliency encoder) is hand-built: colour-opponent 1x1
convolution with a threshold (``layer1``, 16 px), two average pools (``layer2`` 8 px,
``layer3`` 4 px), global mean, logits = 40 x the colour excess."""
import copy

import pytest
import torch
from torch import nn

from xaisec.explainers.rts import (DEFAULT_PHASES, RTS, SaliencyModel, auto_encoder_layers,
                                   load_rts, save_rts, train_rts)
from xaisec.models.classifiers import build_model

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE, PATCH, CLASSES = 16, 6, 3
#: the authors' two phases (selector on "class exists", then decoder on eq. 11), shortened;
#: the area weight is lowered for 3 classes (with the default 8 the classifier terms, at most
#: -log(1/3) per image, cannot pay for a mask and it stays empty)
PHASES = [
    {"iterations": 60, "batch_size": 32, "fake_prob": 0.5, "objective": "exists",
     "trainable": "selector", "lr": 0.05},
    {"iterations": 200, "batch_size": 32, "fake_prob": 0.3, "smoothness": 0.005,
     "objective": "saliency", "trainable": "decoder", "lr": 3e-3, "area": 2.0},
]


class ColourNet(nn.Module):
    def __init__(self, scale: float = 40.0):
        super().__init__()
        conv = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            conv.weight.copy_((1.5 * torch.eye(3) - 0.5).view(3, 3, 1, 1))
            conv.bias.fill_(-0.3)
        self.layer1 = nn.Sequential(conv, nn.ReLU())
        self.layer2 = nn.AvgPool2d(2)
        self.layer3 = nn.AvgPool2d(2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, CLASSES)
        with torch.no_grad():
            self.fc.weight.copy_(scale * torch.eye(3))
            self.fc.bias.zero_()
        self.input_size = SIZE

    def forward(self, x):
        return self.fc(self.pool(self.layer3(self.layer2(self.layer1(x)))).flatten(1))


def toy_data(n: int, seed: int):
    """(images (n, 3, 16, 16) in [0, 1], labels (n,), object masks (n, 1, 16, 16) bool)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    grey = 0.2 + 0.6 * torch.rand(n, 1, 1, 1, generator=g)
    x = (grey + 0.05 * torch.randn(n, 1, SIZE, SIZE, generator=g)
         + 0.02 * torch.randn(n, 3, SIZE, SIZE, generator=g))
    r, c = (torch.randint(0, SIZE - PATCH + 1, (n, 1, 1), generator=g) for _ in range(2))
    i = torch.arange(SIZE)
    rows = (i[None, :, None] >= r) & (i[None, :, None] < r + PATCH)
    cols = (i[None, None, :] >= c) & (i[None, None, :] < c + PATCH)
    m = (rows & cols)[:, None]
    colour = nn.functional.one_hot(y, CLASSES).float()[:, :, None, None].expand(-1, -1, SIZE, SIZE)
    return torch.where(m, colour, x).clamp(0, 1), y, m


def _no_hooks(model):
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(0)
    net = ColourNet().eval()
    x, y, _ = toy_data(512, 0)
    sal = SaliencyModel(net, CLASSES, width=8)
    init = copy.deepcopy(sal.state_dict())
    net_state = copy.deepcopy(net.state_dict())
    snaps, calls = {}, []

    def progress(step, total, row):
        calls.append((step, total))
        if row["phase"] == 0 and row["iteration"] == PHASES[0]["iterations"]:
            snaps["after_phase1"] = copy.deepcopy(sal.state_dict())

    hist = train_rts(sal, x, y, phases=PHASES, seed=0, progress=progress)
    sal.eval()
    return {"net": net, "sal": sal, "init": init, "hist": hist, "snaps": snaps,
            "calls": calls, "net_state": net_state}


# ---------------------------------------------------------------- training

def test_training_moves_the_weights_and_lowers_the_loss(toy):
    sal, init, hist, after1 = toy["sal"], toy["init"], toy["hist"], toy["snaps"]["after_phase1"]
    total = sum(p["iterations"] for p in PHASES)
    assert len(hist) == total and toy["calls"] == [(s, total) for s in range(1, total + 1)]
    assert sal.trained
    state = sal.state_dict()
    assert "selector.weight" in state and not any(k.startswith("encoder") for k in state)
    # phase 1 trains the selector alone, phase 2 everything but the selector
    for k, v in state.items():
        if k.startswith("selector"):
            assert not torch.equal(after1[k], init[k]) and torch.equal(v, after1[k]), k
        else:
            assert torch.equal(after1[k], init[k]) and not torch.equal(v, after1[k]), k
    p1 = [r["exists"] for r in hist if r["phase"] == 0]
    p2 = [r["loss"] for r in hist if r["phase"] == 1]
    assert sum(p1[-10:]) / 10 < 0.95 * sum(p1[:10]) / 10
    assert sum(r["exists_acc"] for r in hist[50:60]) / 10 > 0.9  # the selector tells fakes
    assert sum(p2[-20:]) / 20 < 0.9 * sum(p2[:20]) / 20
    assert {"tv", "area", "preserver", "destroyer", "lr", "fake_share"} <= set(hist[-1])


def test_the_encoder_stays_frozen(toy):
    net = toy["net"]
    for k, v in net.state_dict().items():
        assert torch.equal(v, toy["net_state"][k]), k
    assert all(p.grad is None for p in net.parameters())
    assert not net.training
    assert {id(p) for p in toy["sal"].parameters()}.isdisjoint(id(p) for p in net.parameters())
    _no_hooks(net)


def test_masks_are_class_selective(toy):
    sal = toy["sal"]
    x, y, m = toy_data(96, 1)
    with torch.no_grad():
        true, logits = sal(x, y)
        wrong, _ = sal(x, (y + 1) % CLASSES)
    assert true.shape == (96, 1, SIZE, SIZE) and logits.shape == (96, CLASSES)
    true_in = (true * m).sum() / m.sum()
    true_out = (true * ~m).sum() / (~m).sum()
    wrong_in = (wrong * m).sum() / m.sum()
    assert true_in > 0.6, float(true_in)
    assert true_in - true_out > 0.4, (float(true_in), float(true_out))
    assert true_in - wrong_in > 0.3, (float(true_in), float(wrong_in))


def test_training_is_reproducible():
    x, y, _ = toy_data(64, 2)
    phases = [{"iterations": 3, "batch_size": 16, "fake_prob": 0.5, "objective": "exists",
               "trainable": "selector"},
              {"iterations": 4, "batch_size": 16, "fake_prob": 0.3, "smoothness": 0.005}]

    def run(seed):
        torch.manual_seed(0)
        sal = SaliencyModel(ColourNet().eval(), CLASSES, width=4)
        return sal, train_rts(sal, x, y, phases=phases, seed=seed, progress=False)

    (a, ha), (b, hb), (_, hc) = run(0), run(0), run(1)
    assert ha == hb and ha != hc
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_phases_are_checked():
    net = ColourNet().eval()
    sal = SaliencyModel(net, CLASSES, width=4)
    x, y, _ = toy_data(8, 3)
    with pytest.raises(ValueError, match="unknown keys"):
        train_rts(sal, x, y, phases=[{"iterations": 1, "batch_size": 2, "fake_prob": 0.5,
                                      "smothness": 0.1}], progress=False)
    with pytest.raises(ValueError, match="missing key 'fake_prob'"):
        train_rts(sal, x, y, phases=[{"iterations": 1, "batch_size": 2}], progress=False)
    with pytest.raises(ValueError, match="out of range"):
        train_rts(sal, x, torch.full((8,), 3), phases=PHASES, progress=False)
    assert not sal.trained
    assert [p["iterations"] for p in DEFAULT_PHASES] == [8500, 3000]
    assert [p["batch_size"] for p in DEFAULT_PHASES] == [128, 64]
    assert [p["fake_prob"] for p in DEFAULT_PHASES] == [0.5, 0.3]
    assert DEFAULT_PHASES[1]["smoothness"] == 0.005


# ---------------------------------------------------------------- checkpoints

def test_checkpoint_round_trip(toy, tmp_path):
    path = tmp_path / "rts.pt"
    save_rts(path, toy["sal"], {"dataset": "toy", "phases": PHASES})
    loaded = load_rts(path, toy["net"])
    assert loaded.trained and not loaded.training
    assert loaded.meta == {"dataset": "toy", "phases": PHASES}
    assert loaded.encoder is toy["net"] and loaded.encoder_layers == toy["sal"].encoder_layers
    x, y, _ = toy_data(8, 4)
    with torch.no_grad():
        assert torch.equal(loaded(x, y)[0], toy["sal"](x, y)[0])
    saved = torch.load(path, weights_only=True)
    assert not any("layer1" in k or k.startswith("encoder") for k in saved["state_dict"])
    assert [p.name for p in tmp_path.iterdir()] == ["rts.pt"]  # no temporary left


def test_loading_refuses_what_does_not_fit(toy, tmp_path):
    path = tmp_path / "rts.pt"
    save_rts(path, toy["sal"], {})
    other = ColourNet(scale=30.0).eval()  # same layers, other weights
    with pytest.raises(ValueError, match="rts.pt was trained on another encoder"):
        load_rts(path, other)
    assert load_rts(path, other, check_encoder=False).trained
    resnet = build_model(arch="resnet20", num_classes=CLASSES).eval()
    with pytest.raises(ValueError, match=r"rts.pt does not fit encoder ResNet20.*channels"):
        load_rts(path, resnet)
    resnet10 = build_model(arch="resnet20", num_classes=10).eval()
    with pytest.raises(ValueError, match=r"rts.pt does not fit.*\(N, 3\)"):
        load_rts(path, resnet10)
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.pt: cannot read RTS checkpoint"):
        load_rts(bad, toy["net"])
    plain = tmp_path / "plain.pt"
    torch.save(toy["net"].state_dict(), plain)
    with pytest.raises(ValueError, match="plain.pt is not an RTS checkpoint"):
        load_rts(plain, toy["net"])
    obj = torch.load(path, weights_only=True)
    obj["format_version"] = 99
    torch.save(obj, tmp_path / "future.pt")
    with pytest.raises(ValueError, match="future.pt: RTS checkpoint format version 99"):
        load_rts(tmp_path / "future.pt", toy["net"])
    with pytest.raises(ValueError, match="untrained"):
        save_rts(tmp_path / "u.pt", SaliencyModel(toy["net"], CLASSES, width=4))
    with pytest.raises(FileNotFoundError):
        load_rts(tmp_path / "missing.pt", toy["net"])


# ---------------------------------------------------------------- the explainer

def test_explainer_maps_logits_and_target(toy):
    net, sal = toy["net"], toy["sal"]
    x, y, _ = toy_data(6, 5)
    res = RTS(net, sal).attribute(x)
    with torch.no_grad():
        logits = net(x)
    assert res.maps.shape == (6, 1, SIZE, SIZE)
    assert res.maps.min() >= 0 and res.maps.max() <= 1
    assert not res.maps.requires_grad and not res.logits.requires_grad
    torch.testing.assert_close(res.logits, logits)
    torch.testing.assert_close(res.extra["encoder_logits"], logits)
    assert torch.equal(res.target, logits.argmax(1))
    with torch.no_grad():
        torch.testing.assert_close(res.maps, sal(x, logits.argmax(1))[0])
    assert RTS(net, sal).attribute(x, target=2).target.tolist() == [2] * 6
    # another classifier explained, the saliency encoder's logits kept apart
    model = ColourNet(scale=10.0).eval()
    res2 = RTS(model, sal).attribute(x, target=y)
    with torch.no_grad():
        torch.testing.assert_close(res2.logits, model(x))
    torch.testing.assert_close(res2.extra["encoder_logits"], logits)
    torch.testing.assert_close(res2.maps, RTS(net, sal)(x, target=y))
    _no_hooks(net)


def test_explainer_is_differentiable_and_batch_independent(toy):
    net, sal = toy["net"], toy["sal"]
    x, y, _ = toy_data(5, 6)
    xr = x.clone().requires_grad_(True)
    res = RTS(net, sal).attribute(xr, target=y, create_graph=True)
    assert res.maps.requires_grad and res.extra["encoder_logits"].requires_grad
    (g,) = torch.autograd.grad(res.maps.sum() + res.extra["encoder_logits"].sum(), xr)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    expl = RTS(net, sal)
    whole = expl(x, target=y)
    one_by_one = torch.cat([expl(x[i:i + 1], target=y[i:i + 1]) for i in range(5)])
    torch.testing.assert_close(one_by_one, whole, rtol=1e-5, atol=1e-6)
    _no_hooks(net)


def test_explainer_needs_a_trained_saliency_model(toy):
    net = toy["net"]
    with pytest.raises(ValueError, match="needs a trained SaliencyModel"):
        RTS(net)
    with pytest.raises(ValueError, match="untrained"):
        RTS(net, SaliencyModel(net, CLASSES, width=4))
    with pytest.raises(TypeError):
        RTS(net, nn.Identity())


def test_explainer_from_checkpoint(toy, tmp_path):
    save_rts(tmp_path / "rts.pt", toy["sal"], {})
    x, y, _ = toy_data(4, 7)
    a = RTS.from_checkpoint(toy["net"], tmp_path / "rts.pt")(x, target=y)
    torch.testing.assert_close(a, RTS(toy["net"], toy["sal"])(x, target=y))


# ---------------------------------------------------------------- encoder layers

def test_resnet20_layers_are_found_without_touching_the_model():
    model = build_model(arch="resnet20", num_classes=10).train()
    before = copy.deepcopy(model.state_dict())
    sal = SaliencyModel(model, 10, width=4)
    assert sal.encoder_layers == ["layer1", "layer2", "layer3"]
    assert sal.layer_channels == [16, 32, 64] and sal.layer_sizes == [[32, 32], [16, 16], [8, 8]]
    assert all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # the probe ran in eval mode
    _no_hooks(model)
    model.eval()
    mask, logits = sal(torch.rand(2, 3, 32, 32), torch.tensor([1, 7]))
    assert mask.shape == (2, 1, 32, 32) and logits.shape == (2, 10)


def test_torchvision_resnet50_layers():
    torchvision = pytest.importorskip("torchvision")
    net = torchvision.models.resnet50(weights=None).eval()
    assert auto_encoder_layers(net, input_size=64) == ["layer1", "layer2", "layer3", "layer4"]
