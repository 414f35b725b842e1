import pytest
import torch
from torch import nn

from xaisec.models.classifiers import ModelSpec, build_model, count_parameters, set_activation


@pytest.mark.parametrize("variant", ["bn", "nobn", "frozenbn"])
def test_resnet20_shapes_and_layer_names(variant):
    m = build_model(arch="resnet20", num_classes=7, variant=variant)
    names = dict(m.named_modules())
    assert "layer3.2.bn2" in names and "layer1.0.conv1" in names and "linear" in names
    # layer3.2.bn2 outputs 64x8x8 for a 32x32 input
    feats = {}
    h = names["layer3.2.bn2"].register_forward_hook(lambda mod, i, o: feats.setdefault("a", o))
    out = m(torch.rand(2, 3, 32, 32))
    h.remove()
    assert out.shape == (2, 7)
    assert feats["a"].shape == (2, 64, 8, 8)
    if variant == "nobn":
        assert not any(isinstance(x, nn.BatchNorm2d) for x in m.modules())
        assert isinstance(names["layer3.2.bn2"], nn.Identity)
    else:
        bns = [x for x in m.modules() if isinstance(x, nn.BatchNorm2d)]
        assert len(bns) == 19  # stem + 9 blocks x 2
        assert all(b.weight.requires_grad == (variant == "bn") for b in bns)


def test_resnet20_parameter_count():
    # ResNet-20 for CIFAR-10 has 0.27 M parameters (He et al. 2016, Table 6)
    n = count_parameters(build_model(arch="resnet20", num_classes=10))
    assert 0.26e6 < n < 0.28e6


def test_resnet20_option_a_shortcut_is_parameter_free():
    m = build_model(arch="resnet20")
    assert not list(m.layer2[0].shortcut.parameters())
    x = torch.randn(1, 16, 32, 32)
    y = m.layer2[0].shortcut(x)
    assert y.shape == (1, 32, 16, 16)
    torch.testing.assert_close(y[:, 8:24], x[:, :, ::2, ::2])
    assert y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0


@pytest.mark.parametrize("variant", ["bn", "frozenbn"])
def test_vgg13_shapes(variant):
    m = build_model(arch="vgg13", num_classes=43, variant=variant)
    assert m(torch.rand(2, 3, 32, 32)).shape == (2, 43)
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    assert len(convs) == 10  # VGG-13: 10 conv + 1 linear here (32x32 adaptation)


def test_normalisation_inside_model():
    m = build_model(arch="resnet20").eval()
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(m.normalize(x), (x - mean) / std)


def test_set_activation_swaps_every_activation():
    m = build_model(arch="resnet20")
    n_relu = sum(isinstance(x, nn.ReLU) for x in m.modules())
    set_activation(m, "softplus", beta=8)
    sp = [x for x in m.modules() if isinstance(x, nn.Softplus)]
    assert len(sp) == n_relu == 19 and all(x.beta == 8 for x in sp)
    set_activation(m, "relu")
    assert sum(isinstance(x, nn.ReLU) for x in m.modules()) == n_relu


def test_softplus_model_from_spec():
    m = build_model(ModelSpec(arch="resnet20", activation="softplus", beta=5.0))
    assert all(x.beta == 5.0 for x in m.modules() if isinstance(x, nn.Softplus))


def test_bad_spec_names_the_field():
    with pytest.raises(ValueError, match="arch"):
        ModelSpec(arch="resnet56")
    with pytest.raises(ValueError, match="variant"):
        ModelSpec(variant="gn")
