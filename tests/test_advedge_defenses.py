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
