import numpy as np
import pytest
import torch
from torch import nn
from xaisec.papers.cfn.ablation import COLUMNS, MODES, batch_size_ablation
from xaisec.models.classifiers import build_model


pytestmark = pytest.mark.usefixtures("one_thread")


def _models():
    torch.manual_seed(0)
    original = build_model(arch="resnet20", num_classes=3).eval()
    attacked = build_model(original.spec)
    attacked.load_state_dict(original.state_dict())
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in attacked.modules():  # a "manipulated" copy: other weights and BN statistics
            if isinstance(m, nn.Conv2d):
                m.weight.add_(0.1 * torch.randn(m.weight.shape, generator=g))
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.2 * torch.randn(m.num_features, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.num_features, generator=g))
    return original, attacked.eval()


def _data(n=16):
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8),
            (np.arange(n) % 3).astype(np.int64))


def test_batch_size_ablation_rows_and_batch_dependence():
    original, attacked = _models()
    x, y = _data(20)
    bs = (1, 2, 4, 8, 16)
    df = batch_size_ablation(original, attacked, x, y, batch_sizes=bs, n_samples=16,
                             explainer="relevancecam", target_label=1, progress=False,
                             explainer_kwargs={"weighting": "spatial"})
    assert list(df.columns) == COLUMNS
    assert len(df) == len(bs) * len(MODES)
    assert set(zip(df["batch_size"], df["mode"])) == {(b, m) for b in bs for m in MODES}
    assert (df["n"] == 16).all()
    assert (df["error_mean"] >= 0).all() and (df["clean_error_mean"] >= 0).all()
    assert (df["error_sd"] >= 0).all()
    for col in ("accuracy", "triggered_accuracy", "asr"):
        assert df[col].between(0, 1).all()
    by = {m: g.sort_values("batch_size") for m, g in df.groupby("mode")}
    # BatchNorm in eval mode: the same numbers at every batch size
    for mode in ("attacked", "original"):
        g = by[mode]
        for col in ("accuracy", "triggered_accuracy", "asr", "error_mean", "clean_error_mean"):
            np.testing.assert_allclose(g[col], g[col].iloc[0], atol=1e-5, err_msg=f"{mode} {col}")
    np.testing.assert_allclose(by["original"]["error_mean"], 0, atol=1e-10)
    assert by["attacked"]["error_mean"].iloc[0] > 1e-4  # the attacked maps differ
    # batch statistics: CFN's explanations change with the batch size
    for mode in ("attacked + CFN", "attacked + batchstat"):
        assert by[mode]["error_mean"].round(6).nunique() == len(bs), mode


def test_batch_size_ablation_checks_arguments():
    original, attacked = _models()
    x, y = _data(16)
    with pytest.raises(ValueError, match="not a multiple of batch size"):
        batch_size_ablation(original, attacked, x, y, batch_sizes=(4, 3), n_samples=16,
                            progress=False)
    with pytest.raises(ValueError, match="exceeds"):
        batch_size_ablation(original, attacked, x, y, batch_sizes=(4,), n_samples=32,
                            progress=False)
    with pytest.raises(ValueError, match="unknown modes"):
        batch_size_ablation(original, attacked, x, y, batch_sizes=(4,), n_samples=16,
                            modes=("attacked", "robust"), progress=False)


def test_mode_subset_still_uses_the_original_as_reference():
    original, attacked = _models()
    x, y = _data(8)
    df = batch_size_ablation(original, attacked, x, y, batch_sizes=(4, 8), n_samples=8,
                             explainer="gradcam", modes=("attacked + CFN",), progress=False)
    assert list(df["mode"]) == ["attacked + CFN"] * 2 and list(df["batch_size"]) == [4, 8]


def test_ablation_output_draws_figures_8_and_9(tmp_path):
    """The ablation's CSV is what the figure rule reads (mode names included)."""
    from xaisec.papers.cfn.report import batchsize_figure

    original, attacked = _models()
    x, y = _data(8)
    df = batch_size_ablation(original, attacked, x, y, batch_sizes=(2, 4), n_samples=8,
                             explainer="gradcam", target_label=1, progress=False)
    df.to_csv(tmp_path / "bs.csv", index=False)
    for n in (8, 9):
        batchsize_figure(tmp_path / "bs.csv", n, [tmp_path / f"f{n}.png"])
    assert (tmp_path / "f8.png").stat().st_size > 5000 and (tmp_path / "f9.png").exists()
