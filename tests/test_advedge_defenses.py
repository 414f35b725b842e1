"""AdvEdge part 3's library: adversarial training, interpretation-based robust training, the
interpretation-ensemble detector, Kendall's tau (tests that would catch a fake: a detector
that learns from leaked sources, a robust loss whose inner maximisation does nothing)."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xaisec.defenses.adversarial import AdversarialTraining
from xaisec.defenses.detector import MapDetector, split_by_source, stack_maps
from xaisec.defenses.interpretation_robust import (InterpretationRobustTraining,
                                                   interpretation_discrepancy)
from xaisec.explainers import make_explainer
from xaisec.metrics.rank import kendall_tau
from xaisec.models.classifiers import build_model


def cam(model):
    return make_explainer("cam", model, upsample=False)


@pytest.fixture
def data():
    torch.manual_seed(0)
    model = build_model(arch="resnet20", num_classes=10)
    x = torch.rand(8, 3, 32, 32)
    y = torch.randint(0, 10, (8,))
    return model, x, y


def _train(model, loss_fn, x, y, steps=3):
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(steps):
        loss = loss_fn(model, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def _plain(model, x, y):
    return F.cross_entropy(model(x), y)


# ---------------------------------------------------------------- Kendall's tau

def test_kendall_tau_equals_scipy_with_ties():
    from scipy.stats import kendalltau

    rng = np.random.default_rng(0)
    a = rng.random((6, 5, 5))
    b = a + 0.5 * rng.random((6, 5, 5))
    a[1], b[2] = np.round(a[1] * 3), np.round(b[2] * 2)      # ties
    a[3] = 0.7                                              # a constant map: NaN, as scipy
    ref = [kendalltau(p.ravel(), q.ravel()).statistic for p, q in zip(a, b)]
    np.testing.assert_allclose(kendall_tau(a, b), ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(kendall_tau(a[[0]], a[[0]]), [1.0])
    np.testing.assert_allclose(kendall_tau(a[[0]], -a[[0]]), [-1.0])
    np.testing.assert_allclose(kendall_tau(a, b, max_elements=30), ref, atol=1e-12)  # chunked


# ---------------------------------------------------------------- adversarial training

def test_adversarial_training_with_zero_budget_is_plain_training(data):
    model, x, y = data
    a = _train(copy.deepcopy(model), _plain, x, y)
    b = _train(copy.deepcopy(model), AdversarialTraining(eps=0.0, steps=(2, 3)).loss, x, y)
    # the parameters follow plain training exactly (BatchNorm's running statistics see each
    # adversarial copy as a batch of its own, so they move once per copy)
    for (k, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=k)


def test_adversarial_training_crafts_harder_inputs_without_touching_batchnorm(data):
    model, x, y = data
    model.train()
    before = copy.deepcopy(model.state_dict())
    at = AdversarialTraining(eps=0.031, steps=(3, 6))
    advs = at.adversarial(model, x, y)
    assert model.training and len(advs) == 2
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)   # running stats untouched
    model.eval()
    with torch.no_grad():
        clean = F.cross_entropy(model(x), y)
        assert all(F.cross_entropy(model(a), y) > clean for a in advs)
        assert all((a - x).abs().max() <= 0.031 + 1e-6 for a in advs)
    with pytest.raises(ValueError, match="steps"):
        AdversarialTraining(steps=())


# ---------------------------------------------------------------- robust training

def test_discrepancy_of_an_input_with_itself_is_zero(data):
    model, x, y = data
    model.eval()
    t = (y + 1) % 10
    d = interpretation_discrepancy(cam(model), x, x, y, t)
    assert d.shape == (8,) and torch.equal(d, torch.zeros(8))
    assert (interpretation_discrepancy(cam(model), x, (x + 0.05).clamp(0, 1), y, t) > 0).all()


@pytest.mark.parametrize("gamma, eps", [(0.0, 8 / 255), (0.5, 0.0)])
def test_robust_training_with_gamma_or_eps_zero_is_plain_training(data, gamma, eps):
    model, x, y = data
    a = _train(copy.deepcopy(model), _plain, x, y)
    robust = InterpretationRobustTraining(cam, gamma=gamma, eps=eps, steps=2)
    b = _train(copy.deepcopy(model), robust.loss, x, y)
    for p, q in zip(a.state_dict().values(), b.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_robust_training_maximises_then_penalises_the_discrepancy(data):
    model, x, y = data
    model.eval()
    expl = cam(model)
    t = (y + 1) % 10
    robust = InterpretationRobustTraining("cam", gamma=1.0, eps=8 / 255, alpha=2 / 255, steps=5)
    worst = robust.worst_case(expl, model, x, y, t)
    assert (worst - x).abs().max() <= 8 / 255 + 1e-6
    g = torch.Generator().manual_seed(1)
    rand = (x + (torch.rand(x.shape, generator=g) * 2 - 1) * 8 / 255).clamp(0, 1)
    d_worst = interpretation_discrepancy(expl, x, worst, y, t)
    d_rand = interpretation_discrepancy(expl, x, rand, y, t)
    assert d_worst.mean() > d_rand.mean()
    # the penalty reaches the parameters: the loss differs from plain CE and has gradients
    model.train()
    plain = copy.deepcopy(model)
    loss = robust.loss(model, x, y)
    assert loss > F.cross_entropy(model(x), y)
    loss.backward()
    _plain(plain, x, y).backward()
    diff = sum(float((p.grad - q.grad).abs().sum())
               for p, q in zip(model.parameters(), plain.parameters()))
    assert diff > 0


# ---------------------------------------------------------------- detector

def _backbone():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())


def _synthetic_maps(n, seed, separable=True):
    """Benign maps: one blob; adversarial: the blob plus a second one (separable)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:8, :8]
    maps, labels = [], []
    for i in range(n):
        adv = i % 2
        cy, cx = rng.integers(1, 7, 2)
        m = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 3.0)
        if adv and separable:             # a sharp second peak, away from the first
            m = m + 2 * np.exp(-((yy - (cy + 4) % 8) ** 2 + (xx - (cx + 4) % 8) ** 2) / 0.5)
        maps.append(m + 0.05 * rng.random((8, 8)))
        labels.append(adv)
    return np.asarray(maps)[:, None], np.asarray(labels)


def test_stack_maps_channels_and_product():
    a, _ = _synthetic_maps(4, 0)
    s = stack_maps([a, a[:, :, ::-1]], size=16)
    assert s.shape == (4, 2, 16, 16) and s.amin() >= 0 and s.amax() <= 1
    p = stack_maps([a, a], size=16, product=True)
    torch.testing.assert_close(p[:, 2], p[:, 0] * p[:, 1])
    with pytest.raises(ValueError, match="product"):
        stack_maps([a, a, a], size=16, product=True)


def test_split_by_source_leaks_no_source_image():
    source = np.repeat(np.arange(50), 2)           # each image: its benign and adversarial
    train, test = split_by_source(source, 0.3, seed=0)
    assert not set(source[train]) & set(source[test])
    assert (train ^ test).all() and test.sum() == 30


@pytest.mark.parametrize("shuffle", [False, True])
def test_detector_separates_separable_maps_and_is_at_chance_on_shuffled_labels(shuffle):
    maps1, y = _synthetic_maps(240, 1)
    maps2, _ = _synthetic_maps(240, 2)
    x = stack_maps([maps1, maps2], size=16)
    source = np.arange(240) // 2
    if shuffle:
        y = np.random.default_rng(3).permutation(y)
    train, test = split_by_source(source, 0.5, seed=0)
    det = MapDetector(_backbone(), in_channels=2, epochs=3, seed=0, n_estimators=50)
    det.fit(x[torch.from_numpy(train)], y[train])
    acc = det.accuracy(x[torch.from_numpy(test)], y[test])
    if shuffle:
        assert 0.35 <= acc <= 0.65, acc
    else:
        assert acc >= 0.95, acc


def test_detector_trains_only_the_new_input_and_output_layers():
    bb = _backbone()
    det = MapDetector(bb, in_channels=3, epochs=1, seed=0, n_estimators=5)
    frozen = {k: v.clone() for k, v in det.net.features.state_dict().items()
              if not k.startswith("0.")}
    first = det.net.features[0].weight.clone()
    maps, y = _synthetic_maps(32, 0)
    det.fit(stack_maps([maps, maps, maps], size=16), y)
    for k, v in det.net.features.state_dict().items():
        if k in frozen:
            assert torch.equal(v, frozen[k]), k
    assert not torch.equal(det.net.features[0].weight, first)
    assert det.net.features[0].in_channels == 3 and bb[0].in_channels == 3


# ---------------------------------------------------------------- the training loop's hook

def _fit(tmp_path, name, defense=None, init=None, epochs=1, lr=0.05):
    from xaisec.train import TrainConfig, fit

    torch.manual_seed(0)
    model = build_model(arch="resnet20", num_classes=3)
    if init is not None:
        model.load_state_dict(init.state_dict())
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (48, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 3, 48)
    cfg = TrainConfig(epochs=epochs, batch_size=16, lr=lr, schedule="onecycle",
                      eval_batch_size=16)
    info = fit(model, x, y, x[:16], y[:16], cfg, tmp_path / name, seed=0, defense=defense,
               progress=False)
    return model, info


def test_fit_with_a_zero_budget_defense_follows_plain_training(tmp_path):
    plain, _ = _fit(tmp_path, "plain")
    at, info = _fit(tmp_path, "at", AdversarialTraining(eps=0.0, steps=(1,)))
    for (k, a), b in zip(plain.state_dict().items(), at.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    assert info["defense"].startswith("AdversarialTraining(")


def test_fit_with_adversarial_training_changes_the_model(tmp_path):
    plain, _ = _fit(tmp_path, "plain")
    at, _ = _fit(tmp_path, "at", AdversarialTraining(eps=8 / 255, alpha=4 / 255, steps=(2,)))
    assert not torch.equal(plain.conv1.weight, at.conv1.weight)


def test_train_clean_fine_tunes_from_its_init_checkpoint(tmp_path):
    """``init``: with lr 0 the fine-tuned weights are the init model's (not a fresh draw)."""
    from xaisec import io
    from xaisec.workflow.tasks import train_clean

    start, _ = _fit(tmp_path, "start")
    io.save_model(start, tmp_path / "start.pt", {"fingerprint": "abc"})
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(1)
    for split, n in (("train", 32), ("test", 16)):
        np.savez(data / f"{split}.npz", x=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                 y=rng.integers(0, 3, n))
    io.write_json(data / "manifest.json", {"dataset": "shapes", "class_names": ["a", "b", "c"]})
    info = train_clean(data, tmp_path / "ft", {"arch": "resnet20"},
                       {"epochs": 1, "batch_size": 16, "lr": 0.0, "momentum": 0.0,
                        "weight_decay": 0.0, "schedule": "multistep", "eval_batch_size": 16},
                       seed=3, init_path=tmp_path / "start.pt")
    ft, meta = io.load_model(tmp_path / "ft" / "model.pt")
    torch.testing.assert_close(ft.conv1.weight, start.conv1.weight, rtol=0, atol=0)
    assert meta["init"] == {"path": str(tmp_path / "start.pt"), "fingerprint": "abc"}
    assert info["init"]["fingerprint"] == "abc"


# ---------------------------------------------------------------- input defenses in the model

def test_input_defense_inside_the_model_and_bpda():
    from xaisec.defenses.input import bit_squeezing, median_smoothing, with_input_defense

    torch.manual_seed(0)
    model = build_model(arch="resnet20", num_classes=10).eval()
    x = torch.rand(4, 3, 32, 32)
    med = with_input_defense(model, "median", size=2).eval()
    torch.testing.assert_close(med(x), model(median_smoothing(x, 2)))
    assert not isinstance(model.normalize, nn.Sequential)         # the original untouched
    # CAM finds its layers in the defended copy: the maps are those of the squeezed input
    torch.testing.assert_close(cam(med).attribute(x, target=torch.zeros(4, dtype=torch.long)).maps,
                               cam(model).attribute(median_smoothing(x, 2),
                                                    target=torch.zeros(4, dtype=torch.long)).maps)
    # bit squeezing's own gradient is zero; BPDA passes the model's gradient at squeeze(x)
    bs = with_input_defense(model, "bitsqueeze", bits=3).eval()
    bpda = with_input_defense(model, "bitsqueeze", bpda=True, bits=3).eval()
    torch.testing.assert_close(bpda(x), bs(x))
    xa = x.clone().requires_grad_(True)
    (g0,) = torch.autograd.grad(bs(xa)[:, 1].sum(), xa)
    assert g0.abs().max() == 0
    xb = x.clone().requires_grad_(True)
    (g1,) = torch.autograd.grad(bpda(xb)[:, 1].sum(), xb)
    xs = bit_squeezing(x, 3).requires_grad_(True)
    (g2,) = torch.autograd.grad(model(xs)[:, 1].sum(), xs)
    torch.testing.assert_close(g1, g2)


# ---------------------------------------------------------------- Wide-ResNet, backbones

def test_wide_resnet_shapes_cam_layer_and_size():
    from xaisec.models.classifiers import count_parameters

    m = build_model(arch="wrn16_2", num_classes=10).eval()
    assert m(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert m.features(torch.rand(1, 3, 32, 32)).shape == (1, 128, 8, 8)
    maps = cam(m).attribute(torch.rand(2, 3, 32, 32), target=torch.tensor([0, 1])).maps
    assert maps.shape[-2:] == (8, 8)
    assert 36.0e6 < count_parameters(build_model(arch="wrn28_10", num_classes=10)) < 37.0e6


@pytest.mark.parametrize("arch", ["resnet20", "vgg16_gap", "wrn16_2"])
def test_backbone_layers_are_the_models_feature_stack(arch):
    from xaisec.papers.advedge.defenses import backbone_layers

    torch.manual_seed(0)
    m = build_model(arch=arch, num_classes=10).eval()
    seq = backbone_layers(m)
    assert isinstance(seq[0], nn.Conv2d)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = seq(m.normalize(x))
        ref = m.features(x)
    torch.testing.assert_close(out, ref)


# ---------------------------------------------------------------- the detector's data

def test_detector_data_pairs_each_adversarial_with_its_own_benign_image():
    """A wrong join (another image's benign map, another interpreter's cache) shows: the maps
    encode (interpreter, sample, benign/adversarial)."""
    from xaisec.cache import ExplanationSet
    from xaisec.papers.advedge.defenses import detector_data

    interps = ("grad", "cam", "rts")
    code = {"grad": 1, "cam": 2, "rts": 3}
    samples = np.array([3, 5, 8, 13, 21])

    def es(i, ids, adv):
        maps = np.stack([np.full((1, 2, 2), 100 * code[i] + s + 0.5 * adv, np.float32)
                         for s in ids])
        n = len(ids)
        return ExplanationSet(maps=maps, sample=ids, label=np.zeros(n, np.int64),
                              pred=np.zeros(n, np.int64), confidence=np.ones(n, np.float32),
                              target=np.zeros(n, np.int64), meta={})

    benign = {i: es(i, samples, 0) for i in interps}
    attacks = {i: f"pgd-{i}-advedge" for i in interps}
    subsets = {"grad": samples[[0, 2]], "cam": samples[[1, 3, 4]], "rts": samples[[4]]}
    own = {attacks[i]: {"sample": subsets[i], "maps": es(i, subsets[i], 1).maps}
           for i in interps}
    other = {(attacks[s], i): es(i, subsets[s], 1) for s in interps for i in interps if i != s}
    maps, y, src = detector_data(("grad", "cam"), attacks, benign, own, other)
    assert len(y) == 2 * (2 + 3) and y.sum() == 5
    for i in ("grad", "cam"):
        expect = 100 * code[i] + src + 0.5 * y
        np.testing.assert_array_equal(maps[i][:, 0, 0, 0], expect)


def test_backbone_of_a_torchvision_vgg16_is_its_feature_stack():
    """The paper's backbone: torchvision's VGG-16 (random weights here; ImageNet weights from a
    local file or rule pretrained_model in a run)."""
    from xaisec.papers.advedge.defenses import backbone_layers

    m = build_model(arch="vgg16", num_classes=1000)
    assert backbone_layers(m) is m.net.features and isinstance(m.net.features[0], nn.Conv2d)
