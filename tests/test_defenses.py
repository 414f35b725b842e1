import copy
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from xaisec.defenses import (DEFENSES, KINDS, apply_input_defense, apply_model_defense,
                             get_defense, names)
from xaisec.defenses.input import InputDefense, bit_squeezing, median_smoothing
from xaisec.defenses.model import BatchStatNorm, ChannelwiseFeatureNorm
from xaisec.defenses.training import TrainingDefense
from xaisec.models.classifiers import build_model

apply_defense = apply_model_defense


def _trained_like(model):
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))
    return model.eval()


def _capture(model, name, x):
    store = {}
    mod = dict(model.named_modules())[name]
    h = mod.register_forward_hook(lambda m, i, o: store.update(inp=i[0], out=o))
    model(x)
    h.remove()
    return store["inp"], store["out"]


def test_cfn_matches_formula_in_float64():
    model = _trained_like(build_model(arch="resnet20"))
    cfn = apply_defense(model, "cfn")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in cfn.modules())
    x = torch.rand(16, 3, 32, 32)
    inp, out = _capture(cfn, "layer3.2.bn2", x)
    z = inp.double()
    mean = z.mean(dim=(0, 2, 3), keepdim=True)
    var = ((z - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)  # biased
    expected = (z - mean) / torch.sqrt(var + 1e-5)
    torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=1e-4)


def test_batchstat_keeps_affine():
    model = _trained_like(build_model(arch="resnet20"))
    bs = apply_defense(model, "batchstat")
    bn = dict(model.named_modules())["layer2.1.bn1"]
    x = torch.rand(8, 3, 32, 32)
    inp, out = _capture(bs, "layer2.1.bn1", x)
    z = inp.double()
    mean = z.mean(dim=(0, 2, 3), keepdim=True)
    var = z.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    expected = (z - mean) / torch.sqrt(var + bn.eps) * bn.weight.double().view(1, -1, 1, 1) \
        + bn.bias.double().view(1, -1, 1, 1)
    torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=1e-4)
    assert isinstance(dict(bs.named_modules())["layer2.1.bn1"], BatchStatNorm)


def test_defenses_leave_original_and_running_stats_untouched():
    model = _trained_like(build_model(arch="resnet20"))
    before = copy.deepcopy(model.state_dict())
    for d in ("cfn", "batchstat"):
        apply_defense(model, d)(torch.rand(4, 3, 32, 32))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_none_is_identity_and_depends_on_no_batch():
    model = _trained_like(build_model(arch="resnet20"))
    x = torch.rand(6, 3, 32, 32)
    torch.testing.assert_close(apply_defense(model, "none")(x), model(x))
    torch.testing.assert_close(apply_defense(model, "none")(x[:2]), model(x)[:2])


def test_cfn_output_depends_on_the_batch():
    model = _trained_like(build_model(arch="resnet20"))
    cfn = apply_defense(model, "cfn").eval()
    x = torch.rand(6, 3, 32, 32)
    assert not torch.allclose(cfn(x)[:2], cfn(x[:2]))


def test_cfn_leaves_a_model_without_batchnorm_unchanged():
    model = build_model(arch="resnet20", variant="nobn").eval()
    x = torch.rand(4, 3, 32, 32)
    for d in ("cfn", "batchstat"):
        torch.testing.assert_close(apply_defense(model, d)(x), model(x))


def test_layer_names_survive():
    model = build_model(arch="vgg13")
    names = {n for n, _ in apply_defense(model, "cfn").named_modules()}
    assert names == {n for n, _ in model.named_modules()}
    assert isinstance(dict(apply_defense(model, "cfn").named_modules())["features_seq.1"],
                      ChannelwiseFeatureNorm)


def test_unknown_defense():
    with pytest.raises(ValueError, match="unknown defense"):
        apply_defense(build_model(arch="resnet20"), "groupnorm")
    with pytest.raises(ValueError, match="unknown defense"):
        apply_input_defense(torch.rand(1, 3, 4, 4), "groupnorm")
    with pytest.raises(ValueError, match="unknown defense"):
        get_defense("groupnorm")


# ------------------------------------------------------------------ registry

def test_registry_kinds_and_names():
    assert KINDS == ("model", "input", "training")
    assert names("model") == ("none", "cfn", "batchstat")
    assert names("input") == ("median", "bitsqueeze")
    assert names("training") == ("adversarial", "interpretation_robust")
    assert names() == tuple(DEFENSES)
    assert all(s.description and s.kind in KINDS for s in DEFENSES.values())
    for n in names():
        assert callable(get_defense(n))
    with pytest.raises(ValueError, match="kind"):
        names("postprocessing")


def test_kind_mismatch_is_refused():
    model = build_model(arch="resnet20")
    with pytest.raises(ValueError, match="kind 'input', not 'model'"):
        apply_model_defense(model, "median", size=3)
    with pytest.raises(ValueError, match="kind 'model', not 'input'"):
        apply_input_defense(torch.rand(1, 3, 4, 4), "cfn")


def test_import_is_torch_free():
    code = ("import sys, xaisec.defenses as d; d.names(); d.spec('cfn'); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_training_defense_is_an_abstract_base():
    with pytest.raises(TypeError):
        TrainingDefense()

    class Plain(TrainingDefense):
        def loss(self, model, x, y):
            return nn.functional.cross_entropy(model(x), y)

    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    assert Plain().loss(model, torch.rand(2, 3, 2, 2), torch.tensor([0, 2])).dim() == 0


def test_cfn_standardises_every_channel_over_the_batch():
    model = _trained_like(build_model(arch="resnet20"))
    cfn = apply_model_defense(model, "cfn")
    _, out = _capture(cfn, "layer2.0.bn1", torch.rand(16, 3, 32, 32))
    out = out.double()
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(out.shape[1],
                               dtype=torch.float64), rtol=0, atol=1e-5)
    torch.testing.assert_close(out.var(dim=(0, 2, 3), unbiased=False),
                               torch.ones(out.shape[1], dtype=torch.float64), rtol=0, atol=1e-3)


def test_cfn_eps_setting_reaches_the_layers():
    model = build_model(arch="resnet20")
    cfn = apply_model_defense(model, "cfn", eps=1e-3)
    assert {m.eps for m in cfn.modules() if isinstance(m, ChannelwiseFeatureNorm)} == {1e-3}
    with pytest.raises(TypeError):
        apply_model_defense(model, "batchstat", eps=1e-3)


# ------------------------------------------------------------------ input defenses

def _uint8_valued(shape=(3, 3, 9, 11)):
    return torch.randint(0, 256, shape).float() / 255


def test_identities_on_uint8_valued_images():
    x = _uint8_valued()
    x[0, 0, 0, :2] = torch.tensor([0.0, 1.0])
    torch.testing.assert_close(apply_input_defense(x, "median", size=1), x, rtol=0, atol=0)
    torch.testing.assert_close(apply_input_defense(x, "bitsqueeze", bits=8), x, rtol=0, atol=0)


@pytest.mark.parametrize("size", [2, 3, 4, 5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_median_matches_scipy(size, dtype):
    x = torch.rand(2, 3, 7, 10, dtype=dtype)
    ref = ndimage.median_filter(x.numpy(), size=(1, 1, size, size), mode="reflect")
    out = median_smoothing(x, size)
    assert out.dtype == dtype and out.shape == x.shape
    torch.testing.assert_close(out, torch.from_numpy(ref), rtol=0, atol=0)


def test_median_matches_scipy_when_the_window_exceeds_the_image():
    x = torch.rand(1, 2, 3, 4)
    ref = ndimage.median_filter(x.numpy(), size=(1, 1, 9, 9), mode="reflect")
    torch.testing.assert_close(median_smoothing(x, 9), torch.from_numpy(ref), rtol=0, atol=0)


def test_median_on_ties_of_uint8_values():
    x = _uint8_valued((2, 3, 8, 8))
    x = (x * 4).floor() / 4  # few distinct values: many ties
    for k in (2, 3):
        ref = ndimage.median_filter(x.numpy(), size=(1, 1, k, k), mode="reflect")
        torch.testing.assert_close(median_smoothing(x, k), torch.from_numpy(ref), rtol=0, atol=0)


@pytest.mark.parametrize("bits", [1, 3, 5, 7])
def test_bit_squeezing_formula(bits):
    x = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    levels = 2 ** bits - 1
    expected = torch.from_numpy(np.rint(x.numpy() * levels) / levels)
    out = apply_input_defense(x, "bitsqueeze", bits=bits)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert len(torch.unique(out)) <= levels + 1


def test_input_defense_checks():
    x = torch.rand(1, 3, 4, 4)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="size"):
            median_smoothing(x, bad)
    for bad in (0, 9, 4.5):
        with pytest.raises(ValueError, match="bits"):
            bit_squeezing(x, bad)
    with pytest.raises(ValueError, match="floating"):
        bit_squeezing((x * 255).to(torch.uint8), 4)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        median_smoothing(x[0], 3)


def test_input_defense_module_in_front_of_a_model():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 4))
    x = torch.rand(2, 3, 6, 6, requires_grad=True)
    defended = nn.Sequential(InputDefense("median", size=3), model)
    torch.testing.assert_close(defended(x), model(median_smoothing(x, 3)))
    (g,) = torch.autograd.grad(defended(x).sum(), x)  # differentiable: adaptive attacks
    assert g.abs().sum() > 0
    assert "size=3" in repr(defended)
    with pytest.raises(ValueError, match="not an input defense"):
        InputDefense("cfn")

