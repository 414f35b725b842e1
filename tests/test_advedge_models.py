"""The AdvEdge paper's model families (Section V-A, papers/advedge.txt): the CIFAR members
(DenseNet-BC-40, VGG-16 with a GAP head, a GoogLeNet-style Inception net; ResNet-20 exists),
the torchvision ImageNet networks (ResNet-50, DenseNet-169, VGG-16, Inception-v3; random
weights, nothing downloaded), CAM on them, and the smoothed ReLU on functional ReLUs
(:func:`xaisec.models.activations.smooth_relu_mode`)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import randomise_bn
from xaisec import catalog
from xaisec.explainers import make_explainer
from xaisec.explainers.hooks import capture, default_layer
from xaisec.models.activations import (SmoothReLU, plain_relu, smooth_relu, smooth_relu_mode,
                                       use_smooth_relu)
from xaisec.models.classifiers import (ModelSpec, build_model, count_parameters,
                                       set_activation)
from xaisec.models.imagenet import (INPUT_SIZE, DeepLiftMaxPool2d, DenseNetForCAM,
                                    build_imagenet_model, input_size)

pytestmark = pytest.mark.usefixtures("one_thread")

NEW_CIFAR = ("densenet40", "vgg16_gap", "inception")
#: parameters at 10 classes (counted here; documented in xaisec.models.classifiers)
PARAMS = {"densenet40": 176_122, "vgg16_gap": 14_724_042, "inception": 1_547_402}
#: (channels, side) of the CAM layer for a 32x32 input
CAM_MAP = {"densenet40": (132, 8), "vgg16_gap": (512, 4), "inception": (512, 8)}
NEW_IMAGENET = ("resnet50", "densenet169", "vgg16", "inception_v3")
#: smallest convenient test input per ImageNet net (the net sees ``input_size`` = this)
SIDE = {"resnet50": 64, "densenet169": 64, "vgg16": 32, "inception_v3": 75}


@pytest.fixture(scope="module")
def cifar():
    torch.manual_seed(0)
    return {a: randomise_bn(build_model(arch=a, num_classes=10)).eval() for a in NEW_CIFAR}


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return {a: build_imagenet_model(a, input_size=SIDE[a]) for a in NEW_IMAGENET}


def _second_order(model, x, target=3):
    """(logits, d/dx sum((d logit_t / dx)^2)): a Grad-style loss differentiated twice."""
    x = x.clone().requires_grad_(True)
    out = model(x)
    (g,) = torch.autograd.grad(out[:, target].sum(), x, create_graph=True)
    (g2,) = torch.autograd.grad((g ** 2).sum(), x)
    return out.detach(), g2


# --------------------------------------------------------------------------------------------
# catalog and config
# --------------------------------------------------------------------------------------------


def test_catalog_names_are_unique_and_complete():
    assert set(NEW_CIFAR) <= set(catalog.CIFAR_ARCHS)
    assert set(NEW_IMAGENET) <= set(catalog.IMAGENET_ARCHS)
    assert len(set(catalog.ARCHS)) == len(catalog.ARCHS)  # vgg16 is the ImageNet one


def test_shipped_config_defines_every_new_arch(repo):
    import yaml

    from xaisec.config import load_and_validate

    cfg = load_and_validate(yaml.safe_load((repo / "config" / "config.yaml").read_text()))
    archs = {m["arch"] for m in cfg["models"].values()}
    assert set(NEW_CIFAR) | set(NEW_IMAGENET) <= archs


# --------------------------------------------------------------------------------------------
# CIFAR families
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("arch", NEW_CIFAR)
def test_cifar_shapes_layers_and_parameters(arch, num_classes):
    m = build_model(arch=arch, num_classes=num_classes).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad(), capture(m, outputs=(m.cam_layer,)) as (outs, _):
        out = m(x)
    assert out.shape == (2, num_classes) and torch.isfinite(out).all()
    c, s = CAM_MAP[arch]
    assert outs[m.cam_layer].shape == (2, c, s, s)
    assert m.cam_layer == {"densenet40": "act_final", "vgg16_gap": "convs.41",
                           "inception": "inception5b"}[arch]  # documented names
    assert m.gradcam_layer == m.cam_layer and isinstance(m.linear, nn.Linear)
    for kind, name in (("gradcam", m.gradcam_layer), ("cam", m.cam_layer),
                       ("classifier", "linear")):
        assert default_layer(m, kind) == name
    extra = (num_classes - 10) * (c + 1)  # the linear layer's extra rows
    assert count_parameters(m) == PARAMS[arch] + extra


@pytest.mark.parametrize("arch", NEW_CIFAR)
def test_cifar_normalises_inside_and_cam_layer_feeds_gap_then_linear(cifar, arch):
    m = cifar[arch]
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    torch.testing.assert_close(m.normalize(x), (x - mean) / std)
    with torch.no_grad(), capture(m, outputs=(m.cam_layer,)) as (outs, _):
        out = m(x)
    feats = outs[m.cam_layer]
    torch.testing.assert_close(m.linear(feats.mean(dim=(2, 3))), out)
    torch.testing.assert_close(m.features(x), feats)


@pytest.mark.parametrize("variant", ["nobn", "frozenbn"])
@pytest.mark.parametrize("arch", NEW_CIFAR)
def test_cifar_variants(arch, variant):
    m = build_model(arch=arch, num_classes=10, variant=variant)
    bns = [b for b in m.modules() if isinstance(b, nn.BatchNorm2d)]
    if variant == "nobn":
        assert not bns and all(c.bias is not None for c in m.modules()
                               if isinstance(c, nn.Conv2d))
    else:
        assert bns and not any(b.weight.requires_grad or b.bias.requires_grad for b in bns)
    with torch.no_grad():
        assert m.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("arch", NEW_CIFAR)
def test_cifar_activations_are_modules(arch):
    spec = ModelSpec(arch=arch, num_classes=10, activation="softplus", beta=5.0)
    m = build_model(spec)
    assert not any(isinstance(a, nn.ReLU) for a in m.modules())
    n = sum(isinstance(a, nn.Softplus) for a in m.modules())
    set_activation(m, "relu")
    assert sum(isinstance(a, nn.ReLU) for a in m.modules()) == n
    use_smooth_relu(m)
    assert sum(isinstance(a, SmoothReLU) for a in m.modules()) == n
    assert not any(isinstance(a, nn.ReLU) for a in m.modules())


@pytest.mark.parametrize("arch", NEW_CIFAR)
def test_cifar_round_trip_through_config_spec_and_checkpoint(arch, tmp_path):
    from xaisec import io
    from xaisec.workflow.tasks import model_spec

    spec = model_spec({"arch": arch}, 100)
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    m = randomise_bn(build_model(spec)).eval()
    io.save_model(m, tmp_path / "model.pt", {"arch": arch})
    loaded, meta = io.load_model(tmp_path / "model.pt")
    assert type(loaded) is type(m) and loaded.spec == spec and meta["spec"]["arch"] == arch
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), m(x))


@pytest.mark.parametrize("arch", NEW_CIFAR)
def test_cam_and_gradcam_on_cifar(cifar, arch):
    m = cifar[arch]
    x = torch.rand(2, 3, 32, 32)
    res = make_explainer("cam", m).attribute(x)
    assert res.maps.shape == (2, 1, 32, 32) and res.logits.shape == (2, 10)
    assert res.maps.min() >= 0 and res.maps.max() <= 1 and res.maps.amax(dim=(1, 2, 3)).gt(0).all()
    raw = make_explainer("cam", m, upsample=False, normalize=False).attribute(x, target=1)
    with torch.no_grad():
        feats = m.features(x)
    ref = (m.linear.weight[1][None, :, None, None] * feats).sum(1, keepdim=True)
    torch.testing.assert_close(raw.maps, ref)
    assert make_explainer("gradcam", m)(x).shape == (2, 1, 32, 32)


# --------------------------------------------------------------------------------------------
# ImageNet networks
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NEW_IMAGENET)
def test_imagenet_shapes_and_layers(nets, name):
    m = nets[name]
    s = SIDE[name]
    assert m.input_size == s and m.weights is None and not m.training
    with torch.no_grad():
        out = m(torch.rand(2, 3, s, s))
    assert out.shape == (2, 1000) and torch.isfinite(out).all()
    expected = {"resnet50": ("net.layer4", "net.layer4", "net.fc"),
                "densenet169": ("net.relu", "net.relu", "net.classifier"),
                "vgg16": ("net.features.29", None, None),
                "inception_v3": ("net.Mixed_7c", "net.Mixed_7c", "net.fc")}[name]
    assert (m.gradcam_layer, m.cam_layer, m.classifier_layer) == expected
    assert default_layer(m, "gradcam") == m.gradcam_layer
    if name == "vgg16":  # conv5_3's ReLU, the last before the final max-pool
        assert isinstance(m.get_submodule(m.gradcam_layer), nn.ReLU)
        assert isinstance(m.get_submodule("net.features.30"), DeepLiftMaxPool2d)


def test_input_size_per_arch():
    assert INPUT_SIZE == 224 and input_size("inception_v3") == 299
    assert all(input_size(a) == 224 for a in ("resnet18", "resnet50", "densenet169", "vgg16"))
    with pytest.raises(ValueError, match="unknown ImageNet model"):
        input_size("resnet20")
    m = build_imagenet_model("inception_v3")
    assert m.input_size == 299 and m.net.AuxLogits is None and not m.net.transform_input
    assert m.resize(torch.rand(1, 3, 224, 224)).shape[-2:] == (299, 299)
    with torch.no_grad():
        assert m(torch.rand(2, 3, 299, 299)).shape == (2, 1000)
    with pytest.raises(ValueError, match="at least 75"):
        build_imagenet_model("inception_v3", input_size=64)


def test_inception_normalisation_equals_torchvision_transform_input():
    """Ours (mean = std = 0.5, transform_input=False) computes what torchvision's pipeline
    does (ImageNet mean/std, then transform_input=True) with the same weights."""
    from torchvision.models import inception_v3

    ours = build_imagenet_model("inception_v3", input_size=75, deeplift_safe=False)
    randomise_bn(ours)
    ref = inception_v3(weights=None, aux_logits=False, transform_input=True,
                       init_weights=False).eval()
    ref.load_state_dict(ours.net.state_dict())
    x = torch.rand(2, 3, 75, 75)
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    with torch.no_grad():
        a, b = ours(x), ref((x - mean) / std)
    assert a.abs().max() > 1e-3
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_inception_state_dict_with_aux_logits_loads(tmp_path):
    from torchvision.models import inception_v3

    tv = inception_v3(weights=None, aux_logits=True, init_weights=False)
    torch.save(tv.state_dict(), tmp_path / "inception.pth")
    m = build_imagenet_model("inception_v3", tmp_path / "inception.pth", input_size=75)
    assert not any(k.startswith("net.AuxLogits") for k in m.state_dict())
    torch.testing.assert_close(m.net.fc.weight, tv.fc.weight)
    torch.save({k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")},
               tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="missing keys: fc.weight"):
        build_imagenet_model("inception_v3", tmp_path / "bad.pth", input_size=75)


def test_densenet_head_module_keeps_torchvision_function_and_keys():
    from torchvision.models import densenet169

    m = build_imagenet_model("densenet169", input_size=64, deeplift_safe=False)
    assert isinstance(m.net, DenseNetForCAM) and isinstance(m.net.relu, nn.ReLU)
    tv = densenet169(weights=None).eval()
    assert list(tv.state_dict()) == list(m.net.state_dict())
    tv.load_state_dict(m.net.state_dict())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(m(x), tv(m.normalize(x)), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["inception_v3", "densenet169"])
def test_pretrained_checkpoint_round_trip(name, tmp_path):
    from xaisec import io
    from xaisec.workflow.tasks import pretrained_model

    pretrained_model(name, "random", tmp_path)
    m, meta = io.load_model(tmp_path / "model.pt")
    assert m.arch == name and m.input_size == input_size(name) and meta["spec"]["arch"] == name


@pytest.mark.parametrize("name", ["resnet50", "densenet169", "inception_v3"])
def test_cam_on_imagenet_nets(nets, name):
    m = nets[name]
    s = SIDE[name]
    x = torch.rand(2, 3, s, s)
    cam = make_explainer("cam", m)
    assert (cam.layer, cam.classifier) == (m.cam_layer, m.classifier_layer)
    res = cam.attribute(x)
    assert res.maps.shape == (2, 1, s, s) and torch.isfinite(res.maps).all()
    # the CAM layer is what is globally average pooled before the one linear layer
    with torch.no_grad(), capture(m, outputs=(m.cam_layer,)) as (outs, _):
        out = m(x)
    fc = m.get_submodule(m.classifier_layer)
    torch.testing.assert_close(fc(outs[m.cam_layer].mean(dim=(2, 3))), out)


def test_cam_on_torchvision_vgg16_raises_clearly_grad_and_gradcam_work(nets):
    m = nets["vgg16"]
    with pytest.raises(ValueError, match="CAM is not defined for torchvision vgg16.*global "
                                         "average pooling followed by one linear.*three fully "
                                         "connected"):
        make_explainer("cam", m)
    x = torch.rand(2, 3, 32, 32)
    g = make_explainer("grad", m)(x)
    assert g.shape == (2, 3, 32, 32) and g.abs().sum() > 0
    assert make_explainer("gradcam", m)(x).shape == (2, 1, 32, 32)


# --------------------------------------------------------------------------------------------
# smoothed ReLU on functional ReLUs
# --------------------------------------------------------------------------------------------

_CALLS = {
    "F.relu": lambda z: F.relu(z),
    "F.relu inplace": lambda z: F.relu(z, inplace=True),
    "F.relu inplace positional": lambda z: F.relu(z, True),
    "F.relu_": lambda z: F.relu_(z),
    "torch.relu": torch.relu,
    "torch.relu_": torch.relu_,
    "Tensor.relu": lambda z: z.relu(),
    "Tensor.relu_": lambda z: z.relu_(),
    "nn.ReLU": nn.ReLU(),
    "nn.ReLU inplace": nn.ReLU(inplace=True),
}


@pytest.mark.parametrize("call", list(_CALLS))
def test_every_relu_entry_point_is_smoothed(call):
    fn = _CALLS[call]
    x = torch.tensor([-1.0, -0.01, -1e-3, 0.0, 1e-3, 0.5, 2.0], dtype=torch.float64,
                     requires_grad=True)

    def run():
        z = x * 1.0  # a non-leaf, so the in-place calls are allowed
        y = fn(z)
        (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        return y, g

    y0, g0 = run()
    with smooth_relu_mode(tau=1e-4):
        y1, g1 = run()
    assert torch.equal(y0, y1) and torch.equal(y1, x.detach().clamp_min(0))
    ref = torch.autograd.grad(smooth_relu(x * 1.0, 1e-4).sum(), x)[0]
    torch.testing.assert_close(g1.detach(), ref)
    assert g1[0] > 0 and not torch.equal(g0, g1)  # relu's gradient at -1 is 0
    (gg,) = torch.autograd.grad(g1.sum(), x)  # double backward: non-zero
    assert gg.abs().sum() > 0


def test_mode_does_not_leak():
    x = torch.tensor([-0.5, 0.5], requires_grad=True)
    assert torch._C._len_torch_function_stack() == 0
    with pytest.raises(RuntimeError, match="boom"):
        with smooth_relu_mode():
            assert torch._C._len_torch_function_stack() == 1
            raise RuntimeError("boom")
    assert torch._C._len_torch_function_stack() == 0
    (g,) = torch.autograd.grad(F.relu(x).sum(), x)
    assert g.tolist() == [0.0, 1.0]
    # a graph recorded inside keeps its smoothed backward outside; no_grad runs plain relu
    with smooth_relu_mode():
        y = F.relu(x)
        with torch.no_grad():
            assert torch.equal(F.relu(x), y.detach())
    assert torch.autograd.grad(y.sum(), x)[0][0] > 0


def test_mixed_model_modules_functional_and_smoothrelu():
    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 1)
            self.act = nn.ReLU()
            self.smooth = SmoothReLU(tau=1e-2)

        def forward(self, x):
            x = self.act(self.a(x))
            x = torch.relu(self.b(x)) + F.relu(-x, inplace=False) + self.smooth(x)
            return self.c(x.relu())

    torch.manual_seed(0)
    m = Mixed()
    x = torch.randn(3, 4, dtype=torch.float64)
    m.double()
    plain_out, _ = _second_order(m, x, target=0)
    with smooth_relu_mode():
        out, g2 = _second_order(m, x, target=0)
    assert torch.equal(out, plain_out)
    assert g2.abs().sum() > 0
    assert m.smooth.tau == 1e-2  # SmoothReLU modules keep their own tau


def test_deeplift_maxpool_keeps_a_hard_max_under_smoothing():
    pool = DeepLiftMaxPool2d(3, 2, 1)
    x = torch.randn(2, 3, 9, 9, requires_grad=True)
    (ref,) = torch.autograd.grad((F.max_pool2d(x, 3, 2, 1) ** 2).sum(), x)
    with smooth_relu_mode():
        (g,) = torch.autograd.grad((pool(x) ** 2).sum(), x)
    torch.testing.assert_close(g, ref)
    assert not any(isinstance(r, SmoothReLU) for r in use_smooth_relu(pool).relus)
    with smooth_relu_mode(), plain_relu():  # and plain_relu is undone on exit
        (g,) = torch.autograd.grad(F.relu(x).sum(), x)
    assert ((g == 0) | (g == 1)).all()


@pytest.mark.parametrize("arch", NEW_CIFAR)
def test_second_order_nonzero_under_smooth_relu_mode_cifar(cifar, arch):
    x = torch.rand(2, 3, 32, 32)
    plain_out, plain_g2 = _second_order(cifar[arch], x)
    with smooth_relu_mode():
        out, g2 = _second_order(cifar[arch], x)
    assert torch.equal(out, plain_out)
    assert plain_g2.abs().sum() == 0 and g2.abs().sum() > 0


@pytest.mark.parametrize("name,deeplift_safe", [("densenet169", False), ("inception_v3", True)])
def test_second_order_nonzero_under_smooth_relu_mode_torchvision(nets, name, deeplift_safe):
    """DenseNet as torchvision builds it (in-place ReLU modules, its functional head ReLU
    replaced by :class:`DenseNetForCAM`'s module), and Inception-v3, whose every ReLU is a
    functional ``F.relu(inplace=True)`` that :func:`use_smooth_relu` cannot reach."""
    m = nets[name] if deeplift_safe else build_imagenet_model(name, input_size=SIDE[name],
                                                              deeplift_safe=False)
    assert deeplift_safe or any(getattr(r, "inplace", False) for r in m.modules())
    x = torch.rand(2, 3, SIDE[name], SIDE[name])
    plain_out, plain_g2 = _second_order(m, x)
    with smooth_relu_mode():
        out, g2 = _second_order(m, x)
    assert torch.equal(out, plain_out)
    assert plain_g2.abs().sum() == 0 and g2.abs().sum() > 0
    if name == "inception_v3":  # swapping modules alone leaves Inception-v3 piecewise linear
        _, g2_swapped = _second_order(use_smooth_relu(m), x)
        assert g2_swapped.abs().sum() == 0
