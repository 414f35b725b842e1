import copy

import pytest
import torch
from torch import nn

from xaisec.defenses import BatchStatNorm, ChannelwiseFeatureNorm, apply_defense
from xaisec.models import build_model


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
