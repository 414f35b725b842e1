import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xaisec.attacks import (ATTACKS, BIM, FGSM, Attack, AttackResult, Crafted, make_attack,
                            random_other_class, register_attack)
from xaisec.models.classifiers import build_model

torchattacks = pytest.importorskip("torchattacks")


@pytest.fixture
def model_and_data():
    model = build_model(arch="resnet20", num_classes=10).eval()
    x = torch.rand(6, 3, 32, 32)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


#: quick settings of the registered attacks whose defaults run long (the paper's schedules)
QUICK = {"pgd": {"steps": 5},
         **{f"advedge_{fw}": {"stage1_steps": 2, "stage2": [(0.0, 3)]}
            for fw in ("pgd", "cw", "stadv")}}
#: the attacks with a perturbation budget (C&W and StAdv have none: ``norm = None``)
BUDGETED = sorted(n for n, cls in ATTACKS.items() if cls.norm is not None)


def quick_attack(name, model, **kw):
    """``make_attack`` with short schedules; targeted-only attacks get a target_fn."""
    cls = ATTACKS[name]
    if cls.requires_target:
        kw.setdefault("target_fn", random_other_class(10, torch.Generator().manual_seed(0)))
    return make_attack(name, model, **{**QUICK.get(name, {}), **kw})


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
    eps = 0.025 if ATTACKS[name].norm is not None else None
    adv = quick_attack(name, model, eps=eps)(x, y)
    assert adv.shape == x.shape and adv.dtype == x.dtype and adv.device == x.device
    assert not adv.requires_grad
    assert adv.min() >= 0 and adv.max() <= 1
    if eps is not None:
        assert (adv - x).abs().max() <= eps + 1e-6
    assert (adv - x).abs().max() > 0
    assert model.training is training
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", BUDGETED)
def test_eps_zero_returns_input(model_and_data, name):
    model, x, y = model_and_data
    adv = quick_attack(name, model, eps=0.0)(x, y)
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
        make_attack("no-such-attack", model)
    assert isinstance(make_attack("BIM", model, eps=0.005, steps=3), BIM)


# ------------------------------------------------------------------ base class: targets, losses,
# budgets, records, registry (a small linear model; independent of the ResNet checks above)

@pytest.fixture
def linear():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5)).eval()
    x = torch.rand(8, 3, 4, 4)
    with torch.no_grad():
        y = model(x).argmax(1)
    target = (y + 1 + torch.arange(8) % 4) % 5
    return model, x, y, target


def _logit(model, x, cls):
    with torch.no_grad():
        return model(x).gather(1, cls[:, None])[:, 0]


def test_targeted_bim_moves_toward_the_target(linear):
    model, x, y, t = linear
    adv = BIM(model, eps=0.1, alpha=0.01, steps=10)(x, y, target=t)
    assert (_logit(model, adv, t) > _logit(model, x, t)).all()
    # untargeted, the true label's logit goes down instead
    adv_u = BIM(model, eps=0.1, alpha=0.01, steps=10)(x, y)
    assert (_logit(model, adv_u, y) < _logit(model, x, y)).all()


@pytest.mark.parametrize("eps", [0.025, 0.005])
def test_targeted_bim_matches_torchattacks(model_and_data, eps):
    model, x, y = model_and_data
    t = (y + 3) % 10
    ours = BIM(model, eps=eps, alpha=1 / 255, steps=10)(x, y, target=t)
    ref_atk = torchattacks.BIM(model, eps=eps, alpha=1 / 255, steps=10)
    ref_atk.set_mode_targeted_by_function(lambda images, labels: (labels + 3) % 10, quiet=True)
    torch.testing.assert_close(ours, ref_atk(x, y))


def test_target_fn_makes_the_attack_targeted(linear):
    model, x, y, _ = linear
    fn = random_other_class(5, torch.Generator().manual_seed(3))
    atk = FGSM(model, eps=0.05, target_fn=fn)
    assert atk.targeted and not FGSM(model).targeted
    res = atk.run(x, y)
    expected = random_other_class(5, torch.Generator().manual_seed(3))(x, y)
    torch.testing.assert_close(res.target, expected)
    assert (res.target != y).all()
    # an explicit target wins over target_fn
    t = (y + 1) % 5
    torch.testing.assert_close(atk.run(x, y, target=t).target, t)


def test_random_other_class_never_the_true_label():
    y = torch.randint(0, 3, (500,))
    t = random_other_class(3, torch.Generator().manual_seed(0))(None, y)
    assert (t != y).all() and t.min() >= 0 and t.max() <= 2
    assert set(((t - y) % 3).tolist()) == {1, 2}
    with pytest.raises(ValueError, match="num_classes"):
        random_other_class(1)


@pytest.mark.parametrize("name", ["fgsm", "bim"])
def test_run_records(linear, name):
    model, x, y, t = linear
    n = len(x)
    for target in (None, t):
        atk = make_attack(name, model, eps=0.2)
        res = atk.run(x, y, target=target)
        assert isinstance(res, AttackResult) and len(res) == n
        assert res.adv.shape == x.shape and res.adv.dtype == x.dtype and not res.adv.requires_grad
        torch.testing.assert_close(res.adv, atk(x, y, target=target), rtol=0, atol=0)
        for f in ("label", "prediction", "confidence", "success", "iterations", "time_s"):
            assert getattr(res, f).shape == (n,), f
        assert res.success.dtype == torch.bool and res.iterations.dtype == torch.long
        assert (res.time_s >= 0).all()
        with torch.no_grad():
            prob = torch.softmax(model(res.adv), 1)
        torch.testing.assert_close(res.prediction, prob.argmax(1))
        torch.testing.assert_close(res.confidence, prob.max(1).values)
        if target is None:
            assert res.target is None and not res.targeted
            torch.testing.assert_close(res.success, res.prediction != y)
        else:
            torch.testing.assert_close(res.target, t)
            torch.testing.assert_close(res.success, res.prediction == t)
        assert (res.iterations == (1 if name == "fgsm" else atk.steps)).all()
        rec = res.records()
        assert "adv" not in rec and all(len(v) == n for v in rec.values())
        assert ("target" in rec) == (target is not None)
    both = AttackResult.cat([res, res])
    assert len(both) == 2 * n and both.target.shape == (2 * n,)
    with pytest.raises(ValueError, match="targeted"):
        AttackResult.cat([res, atk.run(x, y)])


def test_eps_zero_records_zero_iterations(linear):
    model, x, y, _ = linear
    assert (BIM(model, eps=0.0).run(x, y).iterations == 0).all()


class _NoBudget(Attack):
    """A toy attack without a perturbation budget (like C&W and StAdv)."""

    norm = None

    def forward(self, batch):
        return Crafted(batch.x.flip(-1), torch.arange(len(batch.x)))


def test_eps_none_only_without_budget(linear):
    model, x, y, _ = linear
    for cls in (FGSM, BIM):
        assert cls.norm == "linf"
        with pytest.raises(ValueError, match="eps"):
            cls(model, eps=None)
    with pytest.raises(ValueError, match="no perturbation budget"):
        _NoBudget(model, eps=0.1)
    res = _NoBudget(model).run(x, y)  # eps defaults to None
    torch.testing.assert_close(res.adv, x.flip(-1))
    torch.testing.assert_close(res.iterations, torch.arange(len(x)))


@pytest.mark.parametrize("zero", [lambda logits, y: 0 * logits.sum(),
                                  lambda logits, y: torch.zeros(())])
def test_custom_loss_is_used(linear, zero):
    model, x, y, _ = linear
    # a loss that is constant gives no gradient: BIM (no random start) leaves x unchanged
    adv = BIM(model, eps=0.1, alpha=0.01, steps=5, loss=zero)(x, y)
    torch.testing.assert_close(adv, x, rtol=0, atol=0)
    # a loss pushing logit 0 up (untargeted attacks ascend the loss)
    up0 = BIM(model, eps=0.1, alpha=0.01, steps=5, loss=lambda logits, y: logits[:, 0].sum())
    zeros = torch.zeros_like(y)
    assert (_logit(model, up0(x, y), zeros) > _logit(model, x, zeros)).all()


def test_per_sample_loss_is_summed(linear):
    model, x, y, _ = linear
    def per_sample(logits, labels):
        return F.cross_entropy(logits, labels, reduction="none")

    torch.testing.assert_close(BIM(model, eps=0.05, loss=per_sample)(x, y),
                               BIM(model, eps=0.05)(x, y))


def test_extra_loss_receives_target_map_and_is_minimised(linear):
    model, x, y, _ = linear
    goal = torch.full_like(x, 0.5)
    seen = {}

    def pull(adv, logits, batch):
        seen["map"] = batch.target_map
        # uses the parameters too: still nothing may reach their .grad
        return ((adv - batch.target_map) ** 2).sum() + 0 * sum(p.sum() for p in model.parameters())

    atk = BIM(model, eps=0.2, alpha=0.01, steps=10, loss=lambda lg, lb: torch.zeros(()),
              extra_loss=pull)
    adv = atk(x, y, target_map=goal)
    assert seen["map"] is not None and seen["map"].shape == goal.shape
    assert ((adv - goal).abs() <= (x - goal).abs()).all()
    assert ((adv - goal).abs().sum() < (x - goal).abs().sum())
    assert all(p.grad is None for p in model.parameters())


def test_target_map_needs_a_user(linear):
    model, x, y, _ = linear
    with pytest.raises(ValueError, match="target_map"):
        BIM(model)(x, y, target_map=torch.zeros(8, 4, 4))
    with pytest.raises(ValueError, match="one map per image"):
        BIM(model, extra_loss=lambda a, lg, b: 0 * a.sum())(x, y, target_map=torch.zeros(3, 4, 4))


def test_input_checks(linear):
    model, x, y, t = linear
    atk = FGSM(model)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        atk(x * 2, y)
    with pytest.raises(ValueError, match="floating"):
        atk((x * 255).to(torch.uint8), y)
    with pytest.raises(ValueError, match="labels"):
        atk(x, y[:3])
    with pytest.raises(ValueError, match="target"):
        atk(x, y, target=t[:3])
    with pytest.raises(TypeError, match="loss"):
        FGSM(model, loss="ce")


def test_registry_finds_a_new_attack(linear):
    model, x, y, _ = linear
    assert "toy" not in ATTACKS
    try:
        assert register_attack("Toy", _NoBudget) is _NoBudget
        atk = make_attack("TOY", model)
        assert isinstance(atk, _NoBudget)
        torch.testing.assert_close(atk(x, y), x.flip(-1))
        with pytest.raises(ValueError, match="already registered"):
            register_attack("toy", FGSM)
    finally:
        ATTACKS.pop("toy", None)
    with pytest.raises(TypeError, match="Attack"):
        register_attack("bad", nn.Linear)
