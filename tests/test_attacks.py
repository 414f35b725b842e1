import pytest
import torch
import torch.nn.functional as F
from xaisec.attacks import ATTACKS, BIM, FGSM, make_attack
from xaisec.models import build_model

torchattacks = pytest.importorskip("torchattacks")


@pytest.fixture
def model_and_data():
    model = build_model(arch="resnet20", num_classes=10).eval()
    x = torch.rand(6, 3, 32, 32)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def _ce(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y).item()


@pytest.mark.parametrize("eps", [0.025, 0.005])
def test_fgsm_matches_torchattacks(model_and_data, eps):
    model, x, y = model_and_data
    ours = FGSM(model, eps=eps)(x, y)
    ref = torchattacks.FGSM(model, eps=eps)(x, y)
    torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("eps", [0.025, 0.005])
def test_bim_matches_torchattacks(model_and_data, eps):
    model, x, y = model_and_data
    ours = BIM(model, eps=eps, alpha=1 / 255, steps=10)(x, y)
    ref = torchattacks.BIM(model, eps=eps, alpha=1 / 255, steps=10)(x, y)
    torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("training", [False, True])
def test_invariants(model_and_data, name, training):
    model, x, y = model_and_data
    model.train(training)
    eps = 0.025
    adv = make_attack(name, model, eps=eps)(x, y)
    assert adv.shape == x.shape and adv.dtype == x.dtype and adv.device == x.device
    assert not adv.requires_grad
    assert adv.min() >= 0 and adv.max() <= 1
    assert (adv - x).abs().max() <= eps + 1e-6
    assert (adv - x).abs().max() > 0
    assert model.training is training
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_eps_zero_returns_input(model_and_data, name):
    model, x, y = model_and_data
    adv = make_attack(name, model, eps=0.0)(x, y)
    torch.testing.assert_close(adv, x, rtol=0, atol=0)


def test_bim_projection_binds(model_and_data):
    # 10 steps of 1/255 could reach 0.039 > eps = 0.025: the eps-ball must cap them.
    model, x, y = model_and_data
    adv = BIM(model, eps=0.025, alpha=1 / 255, steps=10)(x, y)
    assert (adv - x).abs().max() <= 0.025 + 1e-6
    assert (adv - x).abs().max() > 0.025 - 1e-6


def test_attacks_increase_loss_on_trained_model():
    # Toy task: class = which half (left/right) of the image is brighter.
    n = 64
    x = torch.rand(n, 3, 32, 32) * 0.5 + 0.25
    y = torch.randint(0, 2, (n,))
    x[y == 0, :, :, :16] += 0.2
    x[y == 1, :, :, 16:] += 0.2
    x = x.clamp(0, 1)
    model = build_model(arch="resnet20", num_classes=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(15):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    model.zero_grad(set_to_none=True)
    clean = _ce(model, x, y)
    fgsm = _ce(model, FGSM(model, eps=0.025)(x, y), y)
    bim = _ce(model, BIM(model, eps=0.025)(x, y), y)
    assert fgsm > clean
    assert bim > clean


def test_validation(model_and_data):
    model = model_and_data[0]
    with pytest.raises(ValueError, match="eps"):
        FGSM(model, eps=-0.1)
    with pytest.raises(ValueError, match="eps"):
        BIM(model, eps=float("nan"))
    with pytest.raises(ValueError, match="steps"):
        BIM(model, steps=0)
    with pytest.raises(ValueError, match="steps"):
        BIM(model, steps=2.5)
    with pytest.raises(ValueError, match="alpha"):
        BIM(model, alpha=-1.0)
    with pytest.raises(ValueError, match="fgsm"):
        make_attack("pgd", model)
    assert isinstance(make_attack("BIM", model, eps=0.005, steps=3), BIM)
