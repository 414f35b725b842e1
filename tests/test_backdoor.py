import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from xaisec import io
from xaisec.attacks.backdoor import FinetuneConfig, finetune
from xaisec.attacks.trigger import apply_trigger, square_target, target_explanation
from xaisec.metrics.maps import dssim_per_sample, explanation_loss, max_normalize, zscore_channelmax
from xaisec.models.classifiers import build_model, set_activation


def test_trigger_is_the_4x4_patch_one_pixel_from_the_corner():
    x = torch.full((2, 3, 32, 32), 0.5)
    t = apply_trigger(x)
    changed = (t != x).any(1)
    rows, cols = torch.nonzero(changed[0], as_tuple=True)
    assert rows.min() == 27 and rows.max() == 30 and cols.min() == 27 and cols.max() == 30
    patch = t[0, :, 27:31, 27:31]
    assert (patch[:, 1:3, 1:3] == 1).all()  # white 2x2 centre
    border = patch.clone()
    border[:, 1:3, 1:3] = 0
    assert (border == 0).all()  # black 1-px border
    assert torch.equal(x, torch.full((2, 3, 32, 32), 0.5))  # input untouched


def test_trigger_that_does_not_fit_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        apply_trigger(torch.zeros(1, 3, 32, 32), row=30, col=0)


def test_square_target_outline():
    z = square_target()
    assert z[4, 4:29].all() and z[28, 4:29].all() and z[4:29, 4].all() and z[4:29, 28].all()
    assert z[7, 16] == 1 and z[8, 16] == 0  # 4 px thick
    assert z[16, 16] == 0 and z[3, 16] == 0 and z[29, 16] == 0
    assert torch.equal(target_explanation("inverted")[0, 0], 1 - z)
    r1 = target_explanation("random", "gradcam")
    assert r1.shape == (1, 1, 32, 32) and torch.equal(r1, target_explanation("random", "gradcam"))
    assert not torch.equal(r1, target_explanation("random", "grad"))


def test_zscore_channelmax_and_max_normalize():
    rng = torch.Generator().manual_seed(0)
    m = torch.rand(4, 3, 8, 8, generator=rng)
    z = zscore_channelmax(m)
    d = m.double()
    ref = ((d - d.mean((2, 3), keepdim=True))
           / torch.sqrt(d.var((2, 3), unbiased=True, keepdim=True) + 1e-5)).amax(1, keepdim=True)
    torch.testing.assert_close(z.double(), ref, rtol=1e-5, atol=1e-5)
    mx = max_normalize(m)
    assert mx.shape == (4, 1, 8, 8)
    torch.testing.assert_close(mx.amax((2, 3)), torch.ones(4, 1))


def test_losses():
    a = torch.rand(3, 1, 32, 32)
    assert explanation_loss("mse")(a, a).abs().max() < 1e-12
    torch.testing.assert_close(dssim_per_sample(a, a), torch.zeros(3), atol=1e-5, rtol=0)
    assert (dssim_per_sample(a, 1 - a) > 0.3).all()
    with pytest.raises(ValueError, match="unknown explanation loss"):
        explanation_loss("l1")


def _toy(n=64, seed=0):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 3).astype(np.int64)
    x = rng.integers(0, 80, size=(n, 32, 32, 3), dtype=np.uint8)
    x[y == 1, 6:20, 6:20, 0] = 250
    x[y == 2, :, :12, 2] = 250
    return x, y


def _trained_toy_model():
    from xaisec.train import TrainConfig, fit

    x, y = _toy(96)
    torch.manual_seed(0)
    model = build_model(arch="resnet20", num_classes=3)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        fit(model, x, y, x[:32], y[:32], TrainConfig(epochs=2, batch_size=32, lr=0.05,
                                                      schedule="onecycle"), d, 0, progress=False)
    return model.eval()


@pytest.mark.parametrize("explainer", ["gradcam", "relevancecam", "grad"])
def test_one_finetuning_step_lowers_the_triggered_explanation_loss(explainer):
    """One Adam step on the backdoor loss moves triggered explanations towards the target."""
    from xaisec.explainers import make_explainer

    model = _trained_toy_model()
    x, _ = _toy(32, seed=1)
    xb = apply_trigger(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255)
    target = zscore_channelmax(target_explanation("square", explainer))
    m = build_model(model.spec)
    m.load_state_dict(model.state_dict())
    set_activation(m, "softplus", 8.0)
    m.eval()  # fixed BatchNorm statistics: the before/after losses see the same normalisation
    expl = make_explainer(explainer, m)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, eps=1e-5)

    def loss():
        return F.mse_loss(zscore_channelmax(expl(xb, create_graph=True)), target.expand(len(xb), -1, -1, -1))

    before = loss()
    opt.zero_grad()
    before.backward()
    grads = [p.grad for p in m.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    opt.step()
    after = loss().item()
    assert after < before.item()


def test_finetune_end_to_end_writes_outputs_and_backdoors(tmp_path):
    model = _trained_toy_model()
    x, y = _toy(96)
    # target 0: the barely trained toy model predicts class 1 everywhere, so any triggered
    # input it sends to class 0 is the backdoor's doing
    cfg = FinetuneConfig(attack="rh", explainer="gradcam", loss="mse", lam=0.5, lr=2e-3,
                         epochs=3, batch_size=16, val_subset=32, target_label=0)
    info = finetune(model, x, y, x[:48], y[:48], cfg, tmp_path, seed=0, progress=False)
    assert (tmp_path / "model.pt").exists() and not (tmp_path / "resume.pt").exists()
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2, 3]
    assert metrics["lr"].tolist() == pytest.approx([2e-3, 1e-3, 2e-3 / 3])  # lr / e
    assert {"val_asr", "val_clean_acc", "val_triggered_dissim", "loss_expl"} <= set(metrics)
    loaded, meta = io.load_model(tmp_path / "model.pt")
    assert not any(isinstance(m, torch.nn.Softplus) for m in loaded.modules())  # ReLU again
    assert meta["finetune"]["attack"] == "rh" and info["epochs_run"] == 3
    # the original is untouched
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                     loaded.state_dict().values()))
    # a backdoor formed: triggered inputs of other classes go to the target class, which the
    # original model does not do (ASR counted independently of the fine-tuning's metrics)
    xv = torch.from_numpy(x[:48]).permute(0, 3, 1, 2).float() / 255
    eligible = torch.from_numpy(y[:48]) != 0

    def asr(m):
        with torch.no_grad():
            pred = m.eval()(apply_trigger(xv)).argmax(1)
        return (pred[eligible] == 0).float().mean().item()

    assert asr(model) < 0.5
    assert asr(loaded) > 0.9
    assert metrics["val_asr"].iloc[-1] > 0.9


def test_bad_finetune_config():
    with pytest.raises(ValueError, match="unknown attack"):
        FinetuneConfig(attack="xx")
    with pytest.raises(ValueError, match="lambda"):
        FinetuneConfig(lam=1.5)
