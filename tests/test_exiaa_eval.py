"""EXIAA in the workflow: attack-image selection from the pool, the grids, tables and figures."""
import numpy as np
import pandas as pd
import pytest
import torch

from xaisec import io

from xaisec.data import datasets as datasets

from xaisec.papers.exiaa import experiment as exiaa_eval
from xaisec.evaluate import eval_indices
from xaisec.models.classifiers import build_model

SETTINGS = {
    "n_images": 6, "sample_seed": 0, "pool": "test", "attack_ranks": [0, 1],
    "alphas": [0.0, 0.15], "topks": [0.1, 0.5],
    "baseline": {"mean": 0.5, "std": 0.25, "positions": "attack"}, "noise_seed": 0,
    "explain_target": "corrupted", "ig": {"n_steps": 4, "internal_batch_size": None},
    "deepliftshap": {"n_baselines": 2, "seed": 0, "batch_size": 16},
    "batch_size": 64, "images_per_chunk": 4,
    "fig5": {"datasets": ["shapes"], "n_images": 2},
    "figA1": {"datasets": ["shapes"], "n_images": 3, "top_ranks": [0, 1], "low_ranks": [5, 6]},
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("exiaa")
    data = root / "data"
    datasets.prepare("shapes", data, shapes_train=20, shapes_test=120, progress=False)
    torch.manual_seed(0)
    io.save_model(build_model(arch="resnet20", num_classes=10), root / "model.pt", {})
    grids = {}
    for sel in exiaa_eval.SELECTIONS:
        grids[sel] = root / f"saliency-{sel}.parquet"
        exiaa_eval.run(root / "model.pt", data, grids[sel], "saliency", sel, SETTINGS,
                       meta={"dataset": "shapes", "model": "resnet20", "seed": 1}, progress=False)
    return {"root": root, "data": data, "grids": grids}


def test_grid_rows_and_pool(setup):
    df = pd.read_parquet(setup["grids"]["runnerup"])
    assert len(df) == 6 * 2 * 2 * 2 * 2  # images x ranks x alphas x top-k x methods
    draw = eval_indices(120, 6, 0)
    assert set(df["sample"]) == set(draw)
    assert not set(df["attack_sample"]) & set(draw)  # attack images never evaluated ones
    att = df[df["method"] == "attack"]
    # the attack images are of the running-up class, the most confident ones first
    assert (att["attack_label"] == att["runner_up"]).all()
    assert set(att["rank"]) == {0, 1}
    zero = att[att["alpha"] == 0]
    assert (zero["n_changed"] == 0).all() and np.allclose(zero["ssim"], 1.0)


def test_other_classes_and_ranks(setup):
    o = pd.read_parquet(setup["grids"]["others"])
    o = o[o["method"] == "attack"]
    assert set(o["sample"]) == set(eval_indices(120, 6, 0)[:2])
    assert not (o["attack_label"] == o["runner_up"]).any()
    assert not (o["attack_label"] == o["pred_orig"]).any()
    per_image = o.groupby("sample")["attack_label"].nunique()
    assert (per_image == 8).all()  # every class but the prediction and the running-up class
    low = pd.read_parquet(setup["grids"]["low"])
    assert set(low["rank"]) == {5, 6}
    top = pd.read_parquet(setup["grids"]["top"])
    assert set(top["rank"]) == {0, 1}


def test_missing_rank_is_a_clear_error(setup, tmp_path):
    bad = {**SETTINGS, "figA1": {**SETTINGS["figA1"], "low_ranks": [500]}}
    with pytest.raises(ValueError, match="pool image"):
        exiaa_eval.run(setup["root"] / "model.pt", setup["data"], tmp_path / "x.parquet",
                       "saliency", "low", bad, progress=False)
    assert not (tmp_path / "x.parquet").exists()


def test_tables_and_figures(setup, tmp_path):
    s = exiaa_eval.write_table([setup["grids"]["runnerup"]], "B1", tmp_path / "b1.csv",
                               tmp_path / "b1.md")
    raw = pd.read_parquet(setup["grids"]["runnerup"])
    cell = raw[(raw.method == "attack") & (raw.alpha == 0.15) & (raw.topk == 0.5)]
    row = s[(s.method == "attack") & (s.alpha == 0.15) & (s.topk == 0.5)].iloc[0]
    assert row["explanation_change_mean"] == pytest.approx(cell["explanation_change"].mean())
    assert row["n"] == len(cell)
    md = (tmp_path / "b1.md").read_text()
    assert "Table B.1" in md and "**" in md
    for f, sels in ((2, ("runnerup",)), (5, ("runnerup", "others")), ("A1", ("top", "low"))):
        exiaa_eval.figure([setup["grids"][s] for s in sels], f, [tmp_path / f"f{f}.png"])
        assert (tmp_path / f"f{f}.png").stat().st_size > 5000


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown EXIAA explainer"):
        exiaa_eval.build_explainer("lime", build_model(arch="resnet20"), SETTINGS)
