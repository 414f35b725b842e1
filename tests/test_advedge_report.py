"""AdvEdge planning (torch-free targets), metrics and tables on synthetic scores."""
import numpy as np
import pandas as pd
import pytest

from xaisec.config import validate
from xaisec.papers.advedge import report
from xaisec.papers.advedge.targets import AdvedgeTargets, REFERENCE
from xaisec.workflow.plan import PlanError


def config(**adv):
    import yaml
    from pathlib import Path

    c = yaml.safe_load((Path(__file__).parents[1] / "config" / "config.yaml").read_text())
    c["advedge"] = {**c.get("advedge", {}), **adv}
    validate(c)
    return c


class W(dict):
    __getattr__ = dict.get


def test_attack_grid_and_reference():
    t = AdvedgeTargets(config())
    ids = t.attacks()
    assert len(ids) == 4 * 3 + 1 and REFERENCE in ids
    assert t.attack_interpreters(REFERENCE) == ["grad", "cam", "rts", "mask"]
    assert t.attack_interpreters("pgd-cam-advedge") == ["cam"]
    files = t.run_files("cifar10", "resnet20", 1)
    assert files["maps_pgd-none-plain_mask"].endswith("pgd-none-plain/maps-mask.parquet")


def test_jobs_read_only_their_keys():
    t = AdvedgeTargets(config())
    grad = t.attack_settings(W(advint="grad"))
    assert "grad" in grad and "cam" not in grad and "reference_steps" not in grad
    ref = t.attack_settings(W(advint="none"))
    assert "reference_steps" in ref and not {"grad", "cam", "rts", "mask"} & set(ref)
    assert t.interpreter_settings(W(interp="cam")) == {"batch_size": 50, "cam": {}}
    assert set(t.interpreter_settings(W(interp="mask"))["mask"]) == {"solver"}
    assert set(t.interpreter_settings(W(interp="grad"))["grad"]) == {"of", "pool"}
    other = AdvedgeTargets(config(cam={"stage1_steps": 7}))
    assert other.attack_settings(W(advint="grad")) == grad
    assert other.attack_settings(W(advint="cam")) != t.attack_settings(W(advint="cam"))


def test_partial_interpreter_section_keeps_its_own_defaults():
    c = config(cam={"stage1_steps": 7})["advedge"]
    assert c["cam"]["stage2"] == [{"c": [5.0, 10.0], "steps": 500}]
    assert c["cam"]["keep_best"] is False and c["grad"]["keep_best"] is True
    assert c["mask"]["step"] == "l2" and c["mask"]["stage1_steps"] == 400


def test_rts_model_only_where_needed():
    t = AdvedgeTargets(config())
    run = dict(dataset="cifar10", model="resnet20", seed="1")
    assert t.needs_rts(W(advint="grad", **run)) == {}
    assert t.needs_rts(W(advint="rts", **run))["rts"].endswith("advedge/rts.pt")
    assert "rts" in t.needs_rts(W(advint="none", **run))
    assert t.needs_rts(W(interp="rts", **run))
    with pytest.raises(PlanError, match="training split"):
        t.needs_rts(W(advint="rts", dataset="imagenet", model="resnet50", seed="0"))


def test_figures_follow_the_data_sets():
    t = AdvedgeTargets(config(datasets=["cifar10"]))
    names = {p.rsplit("/", 1)[1] for p in t.targets()}
    assert {"advedge_fig10.png", "advedge_fig12.png", "advedge_fig15.png", "advedge_fig9.png",
            "advedge_fig1.png", "advedge_table1.csv", "advedge_comparison.md"} <= names
    assert "advedge_fig3.png" not in names and "advedge_fig11.png" not in names
    both = {p.rsplit("/", 1)[1] for p in AdvedgeTargets(config()).targets()}   # the default
    assert {"advedge_fig11.png", "advedge_fig13.png", "advedge_fig14.png"} <= both
    with pytest.raises(PlanError, match="imagenet"):
        t.box_inputs(W(n="3"))
    shapes = AdvedgeTargets(config(datasets=["shapes"]))
    assert shapes.paper_dataset("shapes") == "cifar10"
    assert shapes.box_inputs(W(n="10"))


def _scores():
    rng = np.random.default_rng(0)
    rows = []
    for attacked, variant, l1 in (("grad", "adv2", 0.2), ("grad", "advedge", 0.1),
                                  ("none", "plain", 0.4)):
        for interp in (["grad", "cam"] if attacked == "none" else [attacked]):
            for s in range(8):
                rows.append({"dataset": "cifar10", "model": "resnet20", "seed": 1,
                             "framework": "pgd", "attacked": attacked, "interpreter": interp,
                             "variant": variant, "sample": s, "success": s != 7,
                             "confidence": 0.9, "time_s": 2.0, "l1": l1 + 0.01 * rng.random(),
                             "iou": 0.5, "noise": 0.1, "iou_top_fraction": 0.25,
                             "edge_stages": "paper", "smoothing": "paper",
                             "schedules": "paper"})
    return pd.DataFrame(rows)


def test_rates_count_each_attacked_input_once(tmp_path):
    df = _scores()
    df["paper_dataset"], df["arch"] = "cifar10", "resnet20"
    t7 = report.write_rate_table(df, "asr", tmp_path / "t7.csv", tmp_path / "t7.md")
    ref = t7[t7["variant"] == "PGD (no interpretation term)"]
    assert len(ref) == 1 and ref["n"].iloc[0] == 8      # 2 interpreters, one attack
    assert np.allclose(t7["asr"], 100 * 7 / 8)
    assert (t7[t7["variant"] == "ADV2"]["paper"] == 100).all()
    t8 = report.write_rate_table(df, "mc", tmp_path / "t8.csv", tmp_path / "t8.md")
    assert np.allclose(t8["mc"], 0.9)
    t1 = report.write_time_table(df, tmp_path / "t1.csv", tmp_path / "t1.md")
    adv2 = t1[t1["variant"] == "ADV2"].iloc[0]
    assert adv2["seconds"] == 2.0 and adv2["paper"] == 4.94   # CIFAR-10, PGD, ResNet, Grad


def test_comparison_pairs_with_the_reference_of_the_same_interpreter(tmp_path):
    df = _scores()
    table = report.write_comparison(df, tmp_path / "c.csv", tmp_path / "c.md")
    row = table[(table["attack"] == "AdvEdge")].iloc[0]
    assert row["n_paired"] == 7
    assert row["l1_pgd"] == pytest.approx(df[(df.attacked == "none") & (df.interpreter == "grad")
                                              & df.success]["l1"].mean())
    assert row["p_lower_l1"] < 0.05
    assert "IoU of the top 25%" in (tmp_path / "c.md").read_text()


def test_similarity_metrics():
    from xaisec.metrics.similarity import l1_distance, noise_rate, topk_iou

    a = np.random.default_rng(0).random((3, 1, 8, 8))
    assert np.allclose(l1_distance(a, a), 0) and np.allclose(topk_iou(a, a, 0.25), 1)
    assert np.allclose(l1_distance(a, 2 * a + 1), 0)          # scaled to [0, 1] first
    assert np.allclose(l1_distance(np.zeros((1, 1, 2, 2)), np.eye(2)[None, None]), 0.5)
    x = np.random.default_rng(1).random((2, 3, 16, 16))
    assert np.allclose(noise_rate(x, x), 0)
    assert (noise_rate(x, np.clip(x + 0.1, 0, 1)) > 0).all()
