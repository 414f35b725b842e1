import numpy as np
import pandas as pd
import pytest
import torch

from xaisec import io
from xaisec.models.classifiers import build_model
from xaisec.tensors import nhwc_to_tensor
from xaisec.train import TrainConfig, fit, random_crop_flip


def _toy(n=96, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.integers(0, 60, size=(n, 32, 32, 3), dtype=np.uint8)
    x[y == 1, 8:24, 8:24, 0] = 250  # a learnable red square for class 1
    x[y == 2, :, :16, 2] = 250      # a blue left half for class 2
    return x, y.astype(np.int64)


CFG = dict(epochs=2, batch_size=32, lr=0.05, schedule="onecycle", eval_batch_size=50)


def _train(tmp, seed=3, **over):
    x, y = _toy()
    torch.manual_seed(seed)
    model = build_model(arch="resnet20", num_classes=3)
    info = fit(model, x, y, x[:48], y[:48], TrainConfig(**{**CFG, **over}), tmp, seed,
               progress=False)
    return model, info


def test_same_seed_same_weights(tmp_path):
    m1, _ = _train(tmp_path / "a")
    m2, _ = _train(tmp_path / "b")
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    m3, _ = _train(tmp_path / "c", seed=4)
    assert not torch.equal(m1.linear.weight, m3.linear.weight)


def test_outputs_and_reload(tmp_path):
    model, info = _train(tmp_path)
    assert (tmp_path / "model.pt").exists() and not (tmp_path / "resume.pt").exists()
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2]
    assert {"train_loss", "test_acc", "images_per_s", "lr"} <= set(metrics.columns)
    loaded, meta = io.load_model(tmp_path / "model.pt")
    assert meta["spec"]["num_classes"] == 3 and meta["test_acc"] == info["test_acc"]
    x = torch.rand(4, 3, 32, 32)
    torch.testing.assert_close(loaded(x), model.eval()(x))


def test_resume_after_interruption_gives_identical_weights(tmp_path, monkeypatch):
    full, _ = _train(tmp_path / "full", epochs=3)
    # run 2 of 3 epochs, "crash", then restart with the same settings
    import xaisec.train as tr

    calls = {"n": 0}
    real = tr.evaluate_accuracy

    def crash_after_two(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(tr, "evaluate_accuracy", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "part", epochs=3)
    assert (tmp_path / "part" / "resume.pt").exists()
    assert not (tmp_path / "part" / "model.pt").exists()
    monkeypatch.setattr(tr, "evaluate_accuracy", real)
    resumed, _ = _train(tmp_path / "part", epochs=3)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    assert len(pd.read_csv(tmp_path / "part" / "metrics.csv")) == 3


def test_training_learns_the_toy_task(tmp_path):
    _, info = _train(tmp_path, epochs=4)
    assert info["test_acc"] > 0.6


def test_random_crop_flip_is_a_shifted_window():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    g = torch.Generator().manual_seed(0)
    out = random_crop_flip(x, g, padding=2, flip=False)
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):  # every output is one of the 25 windows of its own padded image
        windows = [xp[i, :, a:a + 6, b:b + 6] for a in range(5) for b in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    flipped = random_crop_flip(x, torch.Generator().manual_seed(0), padding=0, flip=True)
    for i in range(2):
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(-1))


def test_nhwc_to_tensor():
    x = np.random.default_rng(0).integers(0, 255, (2, 4, 5, 3), dtype=np.uint8)
    t = nhwc_to_tensor(x)
    assert t.shape == (2, 3, 4, 5) and t.dtype == torch.uint8
    assert t[1, 2, 3, 4] == x[1, 3, 4, 2]


def test_bad_train_config():
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="cosine")


def test_divergence_is_a_clear_error(tmp_path, one_thread):
    """A NaN loss stops training with an error naming the fix, and saves no model."""
    from xaisec.models.classifiers import build_model
    from xaisec.train import TrainConfig, TrainingDiverged, fit

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(32, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, size=32)
    model = build_model(arch="resnet20", variant="nobn")
    with pytest.raises(TrainingDiverged, match="models.<key>.train.lr"):
        fit(model, x, y, x[:8], y[:8], TrainConfig(epochs=1, batch_size=16, lr=1e6), tmp_path,
            0, progress=False)
    assert not (tmp_path / "model.pt").exists()
