"""FGSM-XAI pipeline: inputs, explanation caches, scores and tables on a tiny model and data set."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from xaisec import io

from xaisec.data import datasets as datasets

from xaisec.papers.fgsmxai import experiment as fgsmxai
from xaisec.cache import ExplanationSet, read_explanations
from xaisec.models.classifiers import build_model

SETTINGS = {
    "n_images": 12, "sample_seed": 0, "eps": 0.025, "bim": {"steps": 3, "alpha": 1 / 255},
    "explainers": ["smoothgrad", "gradcam", "lime"], "gradcam_layer": None,
    "smoothgrad": {"nt_samples": 3, "stdevs": 0.1, "seed": 0, "nt_samples_batch_size": None},
    "lime": {"n_samples": 40, "num_features": 5, "n_segments": 30, "baseline": "segment_mean",
             "perturbations_per_eval": 40, "images_per_call": 4, "seed": 0},
    "top_fraction": 0.15, "batch_size": 5, "n_examples": 2,
}


@pytest.fixture(scope="module")
def run(tmp_path_factory, one_thread):
    """A shapes data set, a random ResNet-20 and the FGSM-XAI inputs and caches of it."""
    root = tmp_path_factory.mktemp("fgsmxai")
    data = root / "data"
    datasets.prepare("shapes", data, shapes_train=20, shapes_test=30, progress=False)
    torch.manual_seed(0)
    model = build_model(arch="resnet20", num_classes=10)
    io.save_model(model, root / "model.pt", {"dataset": "shapes"})
    record = fgsmxai.make_inputs(root / "model.pt", data, root / "inputs.npz", SETTINGS)
    caches = {}
    for v in fgsmxai.VARIANTS:
        for m in fgsmxai.METHODS:
            caches[(v, m)] = root / f"{v}-{m}.parquet"
            fgsmxai.explain_inputs(root / "model.pt", data, root / "inputs.npz", v, m,
                                   caches[(v, m)], SETTINGS)
    return {"root": root, "data": data, "record": record, "caches": caches}


def test_inputs_respect_the_budget(run):
    inp = fgsmxai.load_inputs(run["root"] / "inputs.npz", run["data"])
    assert len(inp["sample"]) == SETTINGS["n_images"]
    for v in ("fgsm", "bim"):
        d = (inp["x"][v] - inp["x"]["clean"]).abs()
        assert d.amax() <= SETTINGS["eps"] + 1e-6
        assert inp["x"][v].min() >= 0 and inp["x"][v].max() <= 1
    assert (d > 0).any()
    assert inp["mask"] is not None and inp["mask"].shape == (12, 32, 32)
    acc = run["record"]["accuracy"]
    assert set(acc) == set(fgsmxai.VARIANTS) and all(0 <= a <= 1 for a in acc.values())


def test_caches_hold_maps_and_lime_masks(run):
    inp = fgsmxai.load_inputs(run["root"] / "inputs.npz", run["data"])
    for (v, m), p in run["caches"].items():
        es = read_explanations(p)
        np.testing.assert_array_equal(es.sample, inp["sample"])
        np.testing.assert_array_equal(es.pred, inp["pred"][v])  # predicted class explained
        assert es.meta["variant"] == v and es.meta["explainer"] == m
        if m == "lime":
            assert es.map_shape == (1, 32, 32)
            assert set(np.unique(es.maps)) <= {0.0, 1.0}
        elif m == "gradcam":
            assert es.map_shape == (1, 32, 32)
        else:
            assert es.map_shape == (3, 32, 32)


def test_score_against_hand_computed_iou_and_rmse():
    # a 10x10 map with distinct values: the top 15% are its 15 largest pixels
    vals = np.arange(100, dtype=np.float32).reshape(1, 1, 10, 10)
    es = ExplanationSet(maps=vals, sample=np.array([0]), label=np.array([1]), pred=np.array([1]),
                        confidence=np.array([0.9], np.float32), target=np.array([1]),
                        meta={"map_kind": "attribution"})
    gt = np.zeros((1, 10, 10), bool)
    gt[0, 8:, :] = True  # the 20 largest pixels (values 80..99)
    df = fgsmxai.score_set(es, gt, 0.15)
    assert df["iou"].iloc[0] == pytest.approx(15 / 20)
    expected_rmse = np.sqrt(((np.arange(100) / 99.0 - (np.arange(100) >= 80)) ** 2).mean())
    assert df["rmse"].iloc[0] == pytest.approx(expected_rmse)
    # binary masks (LIME) are used as they are
    lime = ExplanationSet(maps=gt[:, None].astype(np.float32), sample=np.array([0]),
                          label=np.array([1]), pred=np.array([2]),
                          confidence=np.array([0.9], np.float32), target=np.array([2]),
                          meta={"map_kind": "binary_mask"})
    df = fgsmxai.score_set(lime, gt, 0.15)
    assert df["iou"].iloc[0] == 1.0 and df["rmse"].iloc[0] == 0.0 and not df["correct"].iloc[0]


def test_tables_and_figures(run, tmp_path):
    runs = [{"dataset": "shapes", "model": "resnet20", "seed": 1, "data_dir": run["data"],
             "inputs": run["root"] / "inputs.npz", "caches": run["caches"]}]
    t1 = fgsmxai.write_iou_rmse_table(runs, "iou", 1, tmp_path / "t1.csv", tmp_path / "t1.md",
                                      SETTINGS)
    assert list(t1["condition"]) == ["Without Attack", "FGSM-2.5%", "BIM-2.5%"]
    assert t1[list(fgsmxai.METHODS)].notna().all().all()
    assert t1["paper_gradcam"].tolist() == [34.66, 33.67, 32.75]
    # the table's cells are the mean of the per-sample scores
    scores = fgsmxai.score(run["caches"], run["root"] / "inputs.npz", run["data"], 0.15)
    mean = scores[(scores.variant == "bim") & (scores.method == "lime")]["iou"].mean()
    assert t1.loc[2, "lime"] == pytest.approx(100 * mean)
    assert "paper 24.63%" in (tmp_path / "t1.md").read_text()
    rec = dict(run["record"], dataset="shapes", model="resnet20", seed=1)
    acc = fgsmxai.write_accuracy_table([rec], tmp_path / "a.csv", tmp_path / "a.md")
    assert acc.loc[0, "acc_clean"] == pytest.approx(100 * rec["accuracy"]["clean"])
    assert acc.iloc[-1]["acc_bim"] == 45.50
    fgsmxai.example_figure(6, runs, SETTINGS, [tmp_path / "f6.png"])
    assert (tmp_path / "f6.png").stat().st_size > 1000


def test_unknown_explainer_is_named():
    with pytest.raises(ValueError, match="unknown FGSM-XAI explainer 'occlusion'"):
        fgsmxai.build_explainer("occlusion", build_model(arch="resnet20"), SETTINGS)
