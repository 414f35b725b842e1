import numpy as np
import pytest
import torch
from xaisec.papers.cfn.examples import PANELS, example_grid
from xaisec.models.classifiers import build_model

NAMES = ["airplane", "automobile", "bird"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _models():
    torch.manual_seed(0)
    original = build_model(arch="resnet20", num_classes=3).eval()
    attacked = build_model(arch="resnet20", num_classes=3).eval()
    return original, attacked


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("explainer", ["gradcam", "relevancecam"])
def test_example_grid_writes_figures(tmp_path, explainer):
    original, attacked = _models()
    before = {k: v.clone() for k, v in attacked.state_dict().items()}
    x, y = _images(3), np.array([0, 1, 2])
    paths = [tmp_path / "ex.png", tmp_path / "ex.pdf"]
    out = example_grid(original, attacked, x, y, NAMES, explainer, defense="cfn", paths=paths,
                       title="RH attack and CFN defense", context_x=_images(13, seed=1))
    assert paths[0].stat().st_size > 10_000 and paths[1].stat().st_size > 0
    for panel in PANELS:
        assert out[panel]["maps"].shape == (3, 32, 32)
        assert out[panel]["probs"].shape == (3, 3)
        np.testing.assert_allclose(out[panel]["probs"].sum(1), 1, rtol=1e-5)
        assert out[panel]["maps"].max() <= 1 + 1e-6
    assert out["context_size"] == 13
    assert (out["x_triggered"][:, 28:30, 28:30] == 255).all()  # the trigger is shown
    assert not attacked.training  # the caller's model keeps its mode and weights
    assert all(torch.equal(v, before[k]) for k, v in attacked.state_dict().items())


def test_defended_panel_depends_on_the_context_only():
    original, attacked = _models()
    x, y = _images(3), np.array([0, 1, 2])
    a = example_grid(original, attacked, x, y, NAMES, "gradcam")
    b = example_grid(original, attacked, x, y, NAMES, "gradcam", context_x=_images(13, seed=1))
    for panel in ("original_clean", "attacked_clean", "attacked_triggered"):
        np.testing.assert_allclose(a[panel]["probs"], b[panel]["probs"], atol=1e-6)
    assert not np.allclose(a["defended_triggered"]["probs"], b["defended_triggered"]["probs"])


def test_example_grid_checks_its_inputs(tmp_path):
    original, attacked = _models()
    x = _images(3)
    with pytest.raises(ValueError, match="3 images but y holds 2 labels"):
        example_grid(original, attacked, x, [0, 1], NAMES, "gradcam")
    with pytest.raises(ValueError, match="class names"):
        example_grid(original, attacked, x, [0, 1, 2], NAMES[:2], "gradcam")
    with pytest.raises(ValueError, match="unknown defense"):
        example_grid(original, attacked, x, [0, 1, 2], NAMES, "gradcam", defense="robust")
    with pytest.raises(ValueError, match="uint8"):
        example_grid(original, attacked, x.astype(np.float32), [0, 1, 2], NAMES, "gradcam")
    with pytest.raises(ValueError, match="context_x"):
        example_grid(original, attacked, x, [0, 1, 2], NAMES, "gradcam",
                     context_x=_images(2)[:, :16])


def test_activation_grid_bn_and_cfn_panels(tmp_path):
    from xaisec.papers.cfn.examples import ACTIVATION_PANELS, activation_grid
    from xaisec.explainers import capture

    original, attacked = _models()
    with torch.no_grad():  # a manipulated final BN: a large learned shift in every channel
        attacked.layer3[2].bn2.bias.fill_(5.0)
    x, y = _images(4), np.array([0, 1, 2, 0])
    paths = [tmp_path / "fig4.png", tmp_path / "fig4.pdf"]
    out = activation_grid(original, attacked, x, y, NAMES, paths=paths, title="Figure 4")
    assert paths[0].stat().st_size > 10_000 and paths[1].stat().st_size > 0
    for panel in ACTIVATION_PANELS:
        assert out[panel]["act"].shape == (4, 64, 8, 8)
        np.testing.assert_allclose(out[panel]["probs"].sum(1), 1, rtol=1e-5)
    # (a): the manipulated model's own BN output, shifted by its learned bias
    with torch.no_grad(), capture(attacked, outputs=("layer3.2.bn2",)) as (outs, _):
        attacked(torch.from_numpy(out["x_triggered"]).permute(0, 3, 1, 2).float() / 255)
    np.testing.assert_allclose(out["attacked_bn"]["act"], outs["layer3.2.bn2"].numpy(), atol=1e-4)
    assert out["attacked_bn"]["act"].mean() > 4
    # (b): CFN standardises each channel over the batch (no context: the 4 shown images)
    act = out["attacked_defended"]["act"]
    np.testing.assert_allclose(act.mean((0, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(act.var((0, 2, 3)), 1, atol=1e-2)


def test_activation_grid_context_shares_the_cfn_batch():
    from xaisec.papers.cfn.examples import activation_grid

    original, attacked = _models()
    x, y = _images(2), np.array([0, 1])
    a = activation_grid(original, attacked, x, y, NAMES)
    b = activation_grid(original, attacked, x, y, NAMES, context_x=_images(10, seed=1))
    np.testing.assert_allclose(a["attacked_bn"]["act"], b["attacked_bn"]["act"], atol=1e-6)
    assert not np.allclose(a["attacked_defended"]["act"], b["attacked_defended"]["act"])
    with pytest.raises(ValueError, match="2 images but y holds 1 labels"):
        activation_grid(original, attacked, x, [0], NAMES)


def test_stack_examples_draws_one_block_per_attack(tmp_path):
    from xaisec.papers.cfn.examples import example_panels, stack_examples

    original, attacked = _models()
    x, y = _images(2), np.array([0, 1])
    blocks = [example_panels(original, m, x, y, NAMES, "gradcam") for m in (attacked, original)]
    paths = [tmp_path / "fig1.png", tmp_path / "fig1.pdf"]
    stack_examples(blocks, NAMES, paths, labels=["RH", "none"], title="Figure 1")
    one = tmp_path / "one.png"
    stack_examples(blocks[:1], NAMES, [one])
    from matplotlib.image import imread

    assert imread(paths[0]).shape[0] > 1.8 * imread(one).shape[0]  # 4 rows against 2
    assert paths[1].read_bytes()[:4] == b"%PDF"
