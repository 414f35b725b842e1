"""Tests of xaisec.data.imagenet: torchvision ImageNet models with random weights (no download) and
ImageNet-style folders of tiny images and masks made here."""
from __future__ import annotations

import json
import urllib.error
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from xaisec.data import datasets as D
from xaisec.explainers import DeepLiftShap, GradCAM, make_explainer, minmax
from xaisec.data.imagenet import find_imagenet_root, load_class_index, read_imagenet_folder
from xaisec.models.imagenet import (
    ARCHS,
    DeepLiftMaxPool2d,
    ImageNetClassifier,
    build_imagenet_model,
    deeplift_problems,
    imagenet_categories,
    make_deeplift_safe,
)
from xaisec.models.classifiers import IMAGENET_MEAN, IMAGENET_STD

pytestmark = pytest.mark.usefixtures("one_thread")

MODELS = ("resnet18", "vit_b_16", "efficientnet_v2_s")


@pytest.fixture(scope="module")
def nets():
    """One random-weight model per architecture for the whole module (ViT-B/16 takes ~2 s)."""
    torch.manual_seed(0)
    return {name: build_imagenet_model(name) for name in MODELS}


@pytest.fixture
def x():
    return torch.rand(2, 3, 64, 64)


def _reference_forward(model: ImageNetClassifier, x: torch.Tensor) -> torch.Tensor:
    """The documented pipeline written out: bilinear resize, ImageNet normalisation, net."""
    if x.shape[-2:] != (224, 224):
        x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False,
                          antialias=x.shape[-1] > 224)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return model.net((x - mean) / std)


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_output_shape_and_attributes(nets, name, x):
    m = nets[name]
    assert isinstance(m, ImageNetClassifier) and not m.training
    with torch.no_grad():
        out = m(x)
    assert out.shape == (2, 1000) and torch.isfinite(out).all()
    assert m.input_size == 224 and m.class_names is None and m.weights is None
    expected = {"resnet18": "net.layer4", "vit_b_16": None, "efficientnet_v2_s": "net.features.7"}
    assert m.gradcam_layer == expected[name]
    if m.gradcam_layer:
        m.get_submodule(m.gradcam_layer)


def test_efficientnet_b0_and_unknown_names():
    m = build_imagenet_model("efficientnet_b0")
    assert m.gradcam_layer == "net.features.8"
    with torch.no_grad():
        assert m(torch.rand(1, 3, 32, 32)).shape == (1, 1000)
    assert set(ARCHS) == {"resnet18", "vit_b_16", "efficientnet_v2_s", "efficientnet_b0",
                          "resnet50", "densenet169", "vgg16", "inception_v3"}
    with pytest.raises(ValueError, match="unknown ImageNet model 'resnet152'"):
        build_imagenet_model("resnet152")
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        build_imagenet_model("resnet18", weights="IMAGENET1K_V9")
    with pytest.raises(ValueError, match="not weights of resnet18"):
        build_imagenet_model("resnet18", weights="ViT_B_16_Weights.IMAGENET1K_V1")


@pytest.mark.parametrize("size", [64, 224, 300])
def test_resize_and_normalisation_inside(nets, size):
    m = nets["resnet18"]
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(m(x), _reference_forward(m, x))
    if size == 300:  # shrinking is antialiased, as torchvision's tensor Resize
        from torchvision.transforms import functional as TF

        r = TF.resize(x, [224, 224], antialias=True)
        torch.testing.assert_close(m.resize(x), r)


def test_input_gradient_flows_through_resize(nets, x):
    xg = x.clone().requires_grad_(True)
    nets["resnet18"](xg)[:, 3].sum().backward()
    assert xg.grad.shape == x.shape and xg.grad.abs().sum() > 0


def test_state_dict_file_round_trip(nets, tmp_path, x):
    src = nets["resnet18"]
    torch.save(src.net.state_dict(), tmp_path / "r18.pth")
    torch.save(src.state_dict(), tmp_path / "r18-wrapped.pt")  # "net."-prefixed keys
    for f in ("r18.pth", "r18-wrapped.pt"):
        torch.manual_seed(123)  # a different random init, overwritten by the file
        m = build_imagenet_model("resnet18", weights=tmp_path / f)
        with torch.no_grad():
            torch.testing.assert_close(m(x), src(x), rtol=0, atol=0)
        assert m.weights == str(tmp_path / f)
        assert m.class_names == imagenet_categories() and len(m.class_names) == 1000
    m = build_imagenet_model("resnet18", weights=str(tmp_path / "r18.pth"))  # str path too
    assert m.class_names[0] == "tench"


def test_bad_state_dicts_give_clear_errors(nets, tmp_path):
    sd = nets["resnet18"].net.state_dict()
    torch.save(sd, tmp_path / "r18.pth")
    with pytest.raises(ValueError, match=r"does not fit torchvision efficientnet_b0: missing keys: "
                                         r"features\.0\.0\.weight.*unexpected keys: conv1\.weight"):
        build_imagenet_model("efficientnet_b0", weights=tmp_path / "r18.pth")
    bad = dict(sd)
    bad["fc.weight"] = torch.zeros(10, 512)
    bad["fc.bias"] = torch.zeros(10)
    del bad["layer1.0.bn1.running_var"]
    torch.save(bad, tmp_path / "r18-10.pth")
    with pytest.raises(ValueError, match=r"missing keys: layer1\.0\.bn1\.running_var.*"
                                         r"shape mismatches \(file vs model\): fc\.weight: "
                                         r"\(10, 512\) vs \(1000, 512\)"):
        build_imagenet_model("resnet18", weights=tmp_path / "r18-10.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="does not hold a state dict"):
        build_imagenet_model("resnet18", weights=tmp_path / "list.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="cannot read the state dict"):
        build_imagenet_model("resnet18", weights=tmp_path / "text.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        build_imagenet_model("resnet18", weights=tmp_path / "missing.pth")


def test_torchvision_weights_offline_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    expected = tmp_path / "th" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(RuntimeError, match="put it at " + str(expected).replace(".", r"\.")):
        build_imagenet_model("resnet18", weights="IMAGENET1K_V1", progress=False)
    with pytest.raises(RuntimeError, match="weights=<path to a local state-dict file"):
        build_imagenet_model("resnet18", weights="DEFAULT", progress=False)


def test_torchvision_weights_from_the_hub_cache(nets, tmp_path, monkeypatch, x):
    """A file put at $TORCH_HOME/hub/checkpoints/<name> is used without any download."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))

    def no_network(*args, **kwargs):
        raise AssertionError("must not download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    ckpt = tmp_path / "th" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    ckpt.parent.mkdir(parents=True)
    torch.save(nets["resnet18"].net.state_dict(), ckpt)
    m = build_imagenet_model("resnet18", weights="ResNet18_Weights.IMAGENET1K_V1")
    assert m.weights == "ResNet18_Weights.IMAGENET1K_V1"
    assert m.class_names[:2] == ("tench", "goldfish") and len(m.class_names) == 1000
    with torch.no_grad():
        torch.testing.assert_close(m(x), nets["resnet18"](x), rtol=0, atol=0)


# --------------------------------------------------------------------------------------------
# explainers on the models
# --------------------------------------------------------------------------------------------


def test_gradcam_resnet18_matches_pytorch_grad_cam(nets, x):
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    m = nets["resnet18"]
    t = torch.tensor([5, 700])
    ours = GradCAM(m, layer=m.gradcam_layer)(x, target=t)
    assert ours.shape == (2, 1, 64, 64) and (ours >= 0).all() and ours.sum() > 0
    with pgc.GradCAM(model=m, target_layers=[m.net.layer4[-1]]) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in t])
    torch.testing.assert_close(minmax(ours)[:, 0], torch.from_numpy(ref), atol=1e-5, rtol=1e-4)


def test_gradcam_efficientnet_runs(nets, x):
    m = nets["efficientnet_v2_s"]
    g = GradCAM(m, layer=m.gradcam_layer)
    res = g.attribute(x)
    maps = res.maps
    assert maps.shape == (2, 1, 64, 64) and torch.isfinite(maps).all() and (maps >= 0).all()
    assert res.logits.shape == (2, 1000)


FAST = {"saliency": {}, "ig": {"n_steps": 2}, "deepliftshap": {"n_baselines": 2},
        "smoothgrad": {"nt_samples": 2}}


@pytest.mark.parametrize("explainer", list(FAST))
@pytest.mark.parametrize("name", MODELS)
def test_captum_wrappers_run(nets, name, explainer):
    x = torch.rand(1, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Captum's notes on hooks / requires_grad
        maps = make_explainer(explainer, nets[name], **FAST[explainer])(x)
    assert maps.shape == x.shape and torch.isfinite(maps).all()


def test_deepliftshap_summation_to_delta_on_safe_resnet18():
    """DeepLiftShap's attributions of an image sum to f_t(x) - mean_k f_t(b_k) (float64)."""
    torch.manual_seed(1)
    m = build_imagenet_model("resnet18").double()
    assert deeplift_problems(m, torch.rand(1, 3, 32, 32, dtype=torch.float64)) == {
        "reused": [], "inplace": [], "unsupported": []}
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    bl = torch.rand(3, 3, 32, 32, dtype=torch.float64)
    t = torch.tensor([1, 999])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        attr = DeepLiftShap(m, baselines=bl)(x, target=t)
    with torch.no_grad():
        fx = m(x).gather(1, t[:, None])[:, 0]
        fb = m(bl)[:, t].mean(0)  # (K, 2) -> mean over the baselines
    assert (fx - fb).abs().min() > 1e-3  # a non-trivial check
    torch.testing.assert_close(attr.sum(dim=(1, 2, 3)), fx - fb, rtol=1e-6, atol=1e-8)


def test_plain_torchvision_resnet18_is_not_deeplift_safe_and_the_fix_keeps_the_function():
    torch.manual_seed(2)
    plain = build_imagenet_model("resnet18", deeplift_safe=False)
    x = torch.rand(2, 3, 32, 32)
    problems = deeplift_problems(plain, x[:1])
    assert "net.layer1.0.relu" in problems["reused"] and "net.relu" in problems["inplace"]
    assert problems["unsupported"] == ["net.maxpool"]
    with warnings.catch_warnings(), pytest.raises(RuntimeError, match="more than once"):
        warnings.simplefilter("ignore", UserWarning)
        DeepLiftShap(plain, n_baselines=2)(x)

    keys = list(plain.state_dict())
    xg = x.clone().requires_grad_(True)
    out = plain(xg)
    (g_plain,) = torch.autograd.grad(out[:, 0].sum(), xg)
    safe = make_deeplift_safe(plain)
    assert safe is plain and list(safe.state_dict()) == keys
    assert deeplift_problems(safe, x[:1]) == {"reused": [], "inplace": [], "unsupported": []}
    out2 = safe(xg)
    (g_safe,) = torch.autograd.grad(out2[:, 0].sum(), xg)
    torch.testing.assert_close(out2, out)  # the max-pool differs by rounding only
    torch.testing.assert_close(g_safe, g_plain)


@pytest.mark.parametrize("k, s, p", [(3, 2, 1), (2, 2, 0), (3, 1, 1), ((3, 2), (2, 1), (1, 0))])
def test_deeplift_maxpool_equals_maxpool(k, s, p):
    pool = torch.nn.MaxPool2d(k, s, p)
    ours = DeepLiftMaxPool2d.from_module(pool)
    x = torch.randn(2, 3, 9, 12, dtype=torch.float64, requires_grad=True)
    ref = pool(x)
    out = ours(x)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(out, x, g)[0], torch.autograd.grad(ref, x, g)[0])
    with pytest.raises(ValueError, match="not supported"):
        DeepLiftMaxPool2d.from_module(torch.nn.MaxPool2d(2, ceil_mode=True))


def test_deeplift_problems_lists_efficientnet_silu(nets):
    p = deeplift_problems(nets["efficientnet_v2_s"], torch.rand(1, 3, 32, 32))
    assert not p["reused"] and not p["inplace"] and "net.features.0.2" in p["unsupported"]


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------

INDEX = {"0": ["n01440764", "tench"], "1": ["n01443537", "goldfish"],
         "207": ["n02099601", "golden_retriever"]}
# (class folder, file name, (width, height), mode)
FILES = [
    ("n01440764", "ILSVRC2012_val_00000001.JPEG", (40, 30), "RGB"),
    ("n01440764", "ILSVRC2012_val_00000002.JPEG", (26, 44), "L"),
    ("n02099601", "ILSVRC2012_val_00000003.png", (24, 24), "RGB"),
]


def _write_tree(root: Path, folders=None, masks=True, index=True, mask_scale=1) -> Path:
    """root/images/<class>/<file>, root/masks/<class>/<stem>.png (a box), class index."""
    rng = np.random.default_rng(0)
    for i, (cls, name, (w, h), mode) in enumerate(FILES):
        cls = folders[cls] if folders else cls
        p = root / "images" / cls / name
        p.parent.mkdir(parents=True, exist_ok=True)
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        img = Image.fromarray(arr).convert(mode)
        img.save(p, quality=95) if p.suffix == ".JPEG" else img.save(p)
        if masks:
            mw, mh = w * mask_scale, h * mask_scale
            m = np.zeros((mh, mw), np.uint8)
            m[mh // 4 + i: 3 * mh // 4, mw // 5: 4 * mw // 5 + i] = 255
            mp = root / "masks" / cls / (Path(name).stem + ".png")
            mp.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(m).save(mp)
    if index:
        (root / "imagenet_class_index.json").write_text(json.dumps(INDEX))
    return root


def _expected(root: Path, cls: str, name: str, size: int, resize: int):
    """torchvision's own Resize(resize) + CenterCrop(size) on the PIL images."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    with Image.open(root / "images" / cls / name) as im:
        x = np.asarray(TF.center_crop(TF.resize(im.convert("RGB"), resize,
                                                InterpolationMode.BILINEAR), size))
    with Image.open(root / "masks" / cls / (Path(name).stem + ".png")) as mm:
        m = np.asarray(TF.center_crop(TF.resize(mm, resize, InterpolationMode.NEAREST), size))
    return x, (m > 0).astype(np.uint8)


def test_read_wordnet_layout_with_class_index_and_masks(tmp_path):
    root = _write_tree(tmp_path)
    split = read_imagenet_folder(root / "images", root / "masks", image_size=16, resize=20,
                                 class_index=root / "imagenet_class_index.json", progress=False)
    assert split.x.shape == (3, 16, 16, 3) and split.x.dtype == np.uint8
    assert split.mask.shape == (3, 16, 16) and split.mask.dtype == np.uint8
    assert split.y.tolist() == [0, 0, 207] and split.y.dtype == np.int64
    for i, (cls, name, _, _) in enumerate(FILES):
        ex, em = _expected(root, cls, name, 16, 20)
        np.testing.assert_array_equal(split.x[i], ex)
        np.testing.assert_array_equal(split.mask[i], em)
        assert 0 < split.mask[i].sum() < 16 * 16
    # the parsed dict works as well, and images without masks give mask None
    again = read_imagenet_folder(root / "images", image_size=16, resize=20,
                                 class_index=json.loads(json.dumps(INDEX)), progress=False)
    assert again.mask is None
    np.testing.assert_array_equal(again.x, split.x)


def test_read_numbered_layout(tmp_path):
    root = _write_tree(tmp_path, folders={"n01440764": "3", "n02099601": "17"}, index=False)
    split = read_imagenet_folder(root / "images", root / "masks", image_size=16, resize=None,
                                 progress=False)
    assert split.y.tolist() == [3, 3, 17]
    ex, em = _expected(root, "17", FILES[2][1], 16, 16)
    np.testing.assert_array_equal(split.x[2], ex)
    np.testing.assert_array_equal(split.mask[2], em)


def test_wordnet_subset_without_class_index_warns_or_fails(tmp_path):
    root = _write_tree(tmp_path, index=False)
    with pytest.warns(UserWarning, match="2 class folders .* no class index"):
        split = read_imagenet_folder(root / "images", image_size=16, resize=20, progress=False)
    assert split.y.tolist() == [0, 0, 1]  # positions in the sorted folder names
    with pytest.raises(ValueError, match="pass class_index="):
        read_imagenet_folder(root / "images", image_size=16, resize=20, strict=True,
                             progress=False)


def test_missing_mask_names_the_image(tmp_path):
    root = _write_tree(tmp_path)
    (root / "masks" / "n02099601" / "ILSVRC2012_val_00000003.png").unlink()
    with pytest.raises(FileNotFoundError, match="no mask for image .*ILSVRC2012_val_00000003.png"):
        read_imagenet_folder(root / "images", root / "masks", image_size=16, resize=20,
                             class_index=INDEX, progress=False)


def test_mask_sizes_and_formats(tmp_path):
    root = _write_tree(tmp_path, mask_scale=2)  # masks at twice the resolution: resized first
    split = read_imagenet_folder(root / "images", root / "masks", image_size=16, resize=20,
                                 class_index=INDEX, progress=False)
    assert split.mask.shape == (3, 16, 16) and set(np.unique(split.mask)) == {0, 1}
    # an RGB mask: nonzero in any colour channel is object
    mp = root / "masks" / "n02099601" / "ILSVRC2012_val_00000003.png"
    rgb = np.zeros((24, 24, 3), np.uint8)
    rgb[:, 12:, 1] = 7
    Image.fromarray(rgb).save(mp)
    split = read_imagenet_folder(root / "images", root / "masks", image_size=16, resize=20,
                                 class_index=INDEX, progress=False)
    assert split.mask[2, :, :8].sum() == 0 and split.mask[2, :, 8:].all()
    Image.fromarray(np.zeros((10, 24), np.uint8)).save(mp)  # other aspect ratio
    with pytest.raises(ValueError, match="does not match image"):
        read_imagenet_folder(root / "images", root / "masks", image_size=16, resize=20,
                             class_index=INDEX, progress=False)


def test_bad_folders_and_index(tmp_path):
    root = _write_tree(tmp_path, folders={"n01440764": "3", "n02099601": "n02099601"},
                       index=False)
    with pytest.raises(ValueError, match="mix numbers and names"):
        read_imagenet_folder(root / "images", progress=False)
    other = _write_tree(tmp_path / "other", index=False)
    with pytest.raises(ValueError, match=r"\['n02099601'\] .* not in the class index"):
        read_imagenet_folder(other / "images", progress=False,
                             class_index={"0": ["n01440764", "tench"]})
    with pytest.raises(ValueError, match="outside 0..999"):
        load_class_index({"1000": ["n01440764", "tench"]})
    with pytest.raises(ValueError, match="resize"):
        read_imagenet_folder(root / "images", image_size=16, resize=8)


def test_prepare_imagenet_writes_test_split_with_masks(tmp_path):
    root = _write_tree(tmp_path / "src" / "ilsvrc")
    assert find_imagenet_root(tmp_path / "src") == root
    assert D.fetch("imagenet", tmp_path / "raw", source=tmp_path / "src") == root
    man = D.prepare("imagenet", tmp_path / "out", raw_root=tmp_path / "src", image_size=16,
                    progress=False)
    assert man["dataset"] == "imagenet" and man["num_classes"] == 1000 and man["has_masks"]
    assert man["class_names"][207] == "golden retriever" and man["image_size"] == 16
    assert list(man["splits"]) == ["test"] and man["num_images"] == 3
    assert man["source"]["kind"] == "imagenet-folder"
    assert not (tmp_path / "out" / "train.npz").exists()
    split = D.load_split(tmp_path / "out" / "test.npz")
    assert split.x.shape == (3, 16, 16, 3) and split.mask.shape == (3, 16, 16)
    assert split.y.tolist() == [0, 0, 207]
    ex, em = _expected(root, "n02099601", FILES[2][1], 16, 18)  # resize = round(16 * 256 / 224)
    np.testing.assert_array_equal(split.x[2], ex)
    np.testing.assert_array_equal(split.mask[2], em)
    D.verify_prepared(tmp_path / "out")


def test_prepare_imagenet_masks_elsewhere_and_without_masks(tmp_path):
    root = _write_tree(tmp_path / "src")
    (root / "masks").rename(tmp_path / "seg")
    man = D.prepare("imagenet", tmp_path / "a", raw_root=root, image_size=16, progress=False)
    assert not man["has_masks"]
    assert "mask" not in np.load(tmp_path / "a" / "test.npz").files
    man = D.prepare("imagenet", tmp_path / "b", raw_root=root, image_size=16, progress=False,
                    masks=tmp_path / "seg")
    assert man["has_masks"] and man["source"]["masks"] == str((tmp_path / "seg").resolve())


def test_imagenet_needs_a_local_source(tmp_path):
    spec = D.get_spec("imagenet")
    assert spec.has_masks and not spec.remotes and spec.num_classes == 1000
    with pytest.raises(ValueError, match="data.imagenet.source"):
        D.fetch("imagenet", tmp_path / "raw")
    with pytest.raises(ValueError, match="data.imagenet.source"):
        D.prepare("imagenet", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no ImageNet data found"):
        D.prepare("imagenet", tmp_path / "out", raw_root=tmp_path / "empty")
    root = _write_tree(tmp_path / "src", index=False)  # a subset of wnids and no class index
    with pytest.raises(ValueError, match="pass class_index="):
        D.prepare("imagenet", tmp_path / "out", raw_root=root, image_size=16, progress=False)
    with pytest.raises(ValueError, match="masks= applies to imagenet only"):
        D.read_raw("cifar10", root, masks=root / "masks")


def test_make_deeplift_safe_fixes_vgg13_maxpool_after_relu():
    """The project's VGG-13 has ReLU -> MaxPool2d pairs, where Captum 0.9's max-pool rule
    breaks summation to delta; make_deeplift_safe applies to any model and fixes it."""
    from xaisec.models.classifiers import build_model

    torch.manual_seed(0)
    m = build_model(arch="vgg13").eval().double()
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    bl = torch.rand(3, 3, 32, 32, dtype=torch.float64)
    t = torch.tensor([1, 2])
    with torch.no_grad():
        ref = m(x)
        delta = ref.gather(1, t[:, None])[:, 0] - m(bl)[:, t].mean(0)
    assert "features_seq.6" in deeplift_problems(m, x[:1])["unsupported"]
    make_deeplift_safe(m)
    assert deeplift_problems(m, x[:1]) == {"reused": [], "inplace": [], "unsupported": []}
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        attr = DeepLiftShap(m, baselines=bl)(x, target=t)
    torch.testing.assert_close(attr.sum(dim=(1, 2, 3)), delta, rtol=1e-6, atol=1e-8)
