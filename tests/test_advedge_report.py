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
    assert len(ids) == 3 * 4 * 3 + 1 and REFERENCE in ids
    assert {"cw-mask-advedge+", "stadv-rts-adv2"} <= set(ids)
    small = AdvedgeTargets(config(cw={"interpreters": ["grad"]}, frameworks=["pgd", "cw"]))
    assert len(small.attacks()) == 4 * 3 + 3 + 1
    assert not any(a.startswith("cw-") and "-grad-" not in a for a in small.attacks())
    assert t.attack_interpreters(REFERENCE) == ["grad", "cam", "rts", "mask"]
    assert t.attack_interpreters("pgd-cam-advedge") == ["cam"]
    files = t.run_files("cifar10", "resnet20", 1)
    assert files["maps_pgd-none-plain_mask"].endswith("pgd-none-plain/maps-mask.parquet")


def test_jobs_read_only_their_keys():
    t = AdvedgeTargets(config())
    grad = t.attack_settings(W(advfw="pgd", advint="grad"))
    assert "grad" in grad and "cam" not in grad and "reference_steps" not in grad
    ref = t.attack_settings(W(advfw="pgd", advint="none"))
    assert "reference_steps" in ref and not {"grad", "cam", "rts", "mask"} & set(ref)
    assert t.interpreter_settings(W(interp="cam")) == {"batch_size": 50, "cam": {}}
    assert set(t.interpreter_settings(W(interp="mask"))["mask"]) == {"solver"}
    assert set(t.interpreter_settings(W(interp="grad"))["grad"]) == {"of", "pool"}
    other = AdvedgeTargets(config(cam={"stage1_steps": 7}))
    assert other.attack_settings(W(advfw="pgd", advint="grad")) == grad
    pgd_cam, cw_cam = W(advfw="pgd", advint="cam"), W(advfw="cw", advint="cam")
    assert other.attack_settings(pgd_cam) != t.attack_settings(pgd_cam)
    # C&W reads its own schedule and the interpreter's explainer/term keys, not PGD's schedule
    assert other.attack_settings(cw_cam) == t.attack_settings(cw_cam)
    cw_grad = t.attack_settings(W(advfw="cw", advint="grad"))
    assert set(cw_grad) == {"batch_size", "edge_stages", "schedules", "phi", "cw", "grad"}
    assert set(cw_grad["grad"]) == {"of", "pool"} and set(cw_grad["cw"]) - {"grad"} == {
        "lr", "amsgrad", "cls_weight", "kappa", "dist_weight", "smoothing"}
    assert set(t.attack_settings(W(advfw="cw", advint="mask"))["mask"]) == {
        "solver", "inner_steps", "after_steps", "resolve_every", "resolve_iterations"}
    changed = AdvedgeTargets(config(cw={"grad": {"stage1_steps": 3}}))
    assert changed.attack_settings(W(advfw="cw", advint="grad")) != cw_grad
    assert changed.attack_settings(W(advfw="stadv", advint="grad")) == t.attack_settings(
        W(advfw="stadv", advint="grad"))


def test_partial_interpreter_section_keeps_its_own_defaults():
    c = config(cam={"stage1_steps": 7})["advedge"]
    assert c["cam"]["stage2"] == [{"c": [5.0, 10.0], "steps": 500}]
    assert c["cam"]["keep_best"] is False and c["grad"]["keep_best"] is True
    assert c["mask"]["step"] == "l2" and c["mask"]["stage1_steps"] == 400


def test_partial_framework_section_keeps_each_interpreters_defaults():
    c = config(cw={"cam": {"stage1_steps": 7}}, stadv={"tau": 0.001})["advedge"]
    assert c["cw"]["cam"]["stage2"] == [{"c": [5.0, 10.0], "steps": 1500}]
    assert c["cw"]["cam"]["map_reduction"] == "mean" and c["cw"]["cam"]["stage1_steps"] == 7
    assert c["cw"]["grad"]["prd_weight"] == 2.0 and c["cw"]["mask"]["lr"] == 0.005
    assert c["stadv"]["tau"] == 0.001 and c["stadv"]["cam"]["stage1_steps"] == 200
    assert c["stadv"]["edge_on"] == "flow" and c["stadv"]["neighbours"] == "paper"


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
    # an attack without a success has empty transfer caches: no rows, no error
    assert l1_distance(np.zeros((0, 1, 8, 8)), np.zeros((0, 1, 8, 8))).shape == (0,)
    x = np.random.default_rng(1).random((2, 3, 16, 16))
    assert np.allclose(noise_rate(x, x), 0)
    assert (noise_rate(x, np.clip(x + 0.1, 0, 1)) > 0).all()


# ---------------------------------------------------------------- part 2

def test_transfer_plan_and_targets():
    t = AdvedgeTargets(config(datasets=["cifar10"], models=["resnet20"]))
    files = t.transfer_files("cifar10", "resnet20", 1)
    adv = [k for k in files if k.startswith("adv_")]
    assert len(adv) == 36 and "adv_pgd-none-plain" not in files
    assert files["transfer_cw-cam-advedge"].endswith("cw-cam-advedge/transfer")
    assert files["maps_stadv-rts-adv2_rts"].endswith("stadv-rts-adv2/maps-rts.parquet")
    names = {p.rsplit("/", 1)[1] for p in t.targets()}
    assert {"advedge_table2.md", "advedge_fig6.png", "advedge_fig7.png"} <= names
    s = t.transfer_settings(W(dataset="cifar10", model="resnet20", seed="1"))
    assert s["transfer"] == {"n_samples": 100, "seed": 0}
    assert set(s) == {"batch_size", "interpreters", "grad", "cam", "rts", "mask", "transfer"}
    run = dict(dataset="cifar10", model="resnet20", seed="1")
    assert t.transfer_needs_rts(W(advint="rts", **run)) == {}
    assert "rts" in t.transfer_needs_rts(W(advint="grad", **run))
    pgd_only = AdvedgeTargets(config(transfer={"frameworks": ["pgd"]}))
    assert all(a.startswith("pgd-") for a in pgd_only.transfer_attacks())
    off = AdvedgeTargets(config(datasets=["cifar10"], transfer={"n_samples": 0}))
    off_names = {p.rsplit("/", 1)[1] for p in off.targets()}
    assert "advedge_table2.md" not in off_names and "advedge_fig6.png" not in off_names
    with pytest.raises(PlanError, match="transfer study"):
        off.table_inputs(W(name="table2"))


def test_transfer_subset_is_seeded_successful_and_per_attack():
    from xaisec.papers.advedge.experiment import transfer_subset

    ok = np.array([True, False] * 50)
    a = transfer_subset(ok, 10, 0, "pgd-grad-adv2")
    assert len(a) == 10 and ok[a].all() and (np.diff(a) > 0).all()
    assert np.array_equal(a, transfer_subset(ok, 10, 0, "pgd-grad-adv2"))
    assert not np.array_equal(a, transfer_subset(ok, 10, 0, "pgd-grad-advedge"))
    assert not np.array_equal(a, transfer_subset(ok, 10, 1, "pgd-grad-adv2"))
    assert len(transfer_subset(ok, 500, 0, "x")) == 50          # every success when fewer


def test_transfer_table_joins_the_papers_cell_of_the_same_family(tmp_path):
    rows = []
    for src in ("grad", "cam"):
        for tgt in ("grad", "cam"):
            for s in range(4):
                rows.append({"dataset": "cifar10", "model": "resnet20", "seed": 1,
                             "framework": "pgd", "source": src, "variant": "advedge",
                             "target": tgt, "diagonal": src == tgt, "sample": s,
                             "l1": 0.1 if src == tgt else 0.3, "n_success": 9,
                             "edge_stages": "paper"})
    df = pd.DataFrame(rows)
    df["paper_dataset"], df["arch"] = "cifar10", "resnet20"
    t2 = report.write_transfer_table(df, tmp_path / "t2.csv", tmp_path / "t2.md")
    cell = t2[(t2["source"] == "Grad") & (t2["target"] == "CAM")].iloc[0]
    assert cell["paper_imagenet"] == 0.241 and cell["l1"] == pytest.approx(0.3)   # Table II
    assert t2[t2["diagonal"]]["l1"].eq(0.1).all() and (t2["n"] == 4).all()
    md = (tmp_path / "t2.md").read_text()
    assert "0.300 (0.241)" in md and "CAM AdvEdge" in md


def test_box_outliers_are_those_above_the_upper_whisker():
    l1 = [0.10, 0.11, 0.12, 0.13, 0.14, 0.15, 0.90]
    df = pd.DataFrame({"dataset": "d", "model": "m", "framework": "pgd", "attacked": "grad",
                       "interpreter": "grad", "variant": "adv2", "sample": range(7),
                       "success": True, "l1": l1})
    # a transferred (other-interpreter) row and a failed one never count
    df = pd.concat([df, df.assign(interpreter="cam", l1=5.0), df.assign(success=False, l1=9.0)])
    out = report.box_outliers(df)
    assert out["sample"].tolist() == [6] and out["l1"].tolist() == [0.9]
    q1, q3 = np.percentile(l1, [25, 75])
    assert out["limit"].iloc[0] == pytest.approx(q3 + 1.5 * (q3 - q1))


def test_framework_kwargs_from_the_config():
    from xaisec.papers.advedge.experiment import framework_kwargs

    a = config()["advedge"]
    kw = framework_kwargs("cw", "grad", "advedge+", a)
    assert kw["prd_weight"] == 2.0 and kw["best_threshold"] == 0.75 and kw["lr"] == 0.01
    assert kw["stage2"][-1] == {"c": 0.2, "steps": 101} and kw["variant"] == "advedge+"
    assert kw["cls_weight"] == 1e-4 and kw["smoothing"] == "none" and "max_images" not in kw
    mask = framework_kwargs("stadv", "mask", "adv2", a)
    assert mask["lr"] == 0.005 and mask["tau"] == 5e-4 and mask["edge_on"] == "flow"
    assert framework_kwargs("stadv", "cam", "adv2", a)["map_reduction"] == "mean"


# ---------------------------------------------------------------- part 3: defenses

def test_defense_plan_reads_the_right_models_and_files():
    t = AdvedgeTargets(config())
    files = t.defense_files("cifar10", "densenet40", 1)
    # the AT column reads densenet40's own adversarially trained copy, not resnet20's
    assert files["at_model"] == "results/cifar10/densenet40-at/seed1/clean/model.pt"
    assert files["model"] == "results/cifar10/densenet40/seed1/clean/model.pt"
    assert "adv_pgd-none-plain" not in files and "adv_cw-mask-advedge+" in files
    wb = [k for k in files if k.startswith("wb_")]
    assert len(wb) == 3 * 6 and "wb_adversarial__stadv-cam-advedge" in wb
    at = t.defended_model(W(dataset="cifar10", model="densenet40", seed=1, advdef="adversarial"))
    assert at["model"] == files["at_model"]
    ms = t.defended_model(W(dataset="cifar10", model="densenet40", seed=1, advdef="median"))
    assert ms["model"] == files["model"]
    s = t.defended_attack_settings(W(advfw="pgd", advint="cam", advdef="bitsqueeze"))
    assert s["input"] == {"bitsqueeze": {"bits": 5}} and "grad" not in s
    assert "input" not in t.defended_attack_settings(W(advfw="pgd", advint="cam",
                                                       advdef="adversarial"))
    # no AT counterpart: no AT column, and asking for one is a plan error
    plain = AdvedgeTargets(config(defenses={"adversarial": {}}))
    assert plain.defense_names("resnet20") == ["median", "bitsqueeze"]
    with pytest.raises(PlanError, match="adversarially trained"):
        plain.defended_model(W(dataset="cifar10", model="resnet20", seed=1,
                               advdef="adversarial"))
    from xaisec.config import ConfigError

    with pytest.raises(ConfigError, match="white_box.interpreters"):   # RTS: the undefended's
        config(defenses={"white_box": {"interpreters": ["rts"]}})
    oblivious = AdvedgeTargets(config(defenses={"knowledge": ["oblivious"]}))
    assert oblivious.white_box_attacks() == []


def test_detector_robust_and_blackbox_plans():
    t = AdvedgeTargets(config())
    assert t.detector_attacks() == ["pgd-grad-advedge", "pgd-cam-advedge", "pgd-rts-advedge",
                                    "pgd-mask-advedge"]   # advedge.interpreters order
    f = t.detector_files("cifar10", "resnet20", 1)
    assert f["backbone"] == "results/cifar10/vgg16_gap/seed1/clean/model.pt"
    assert f["maps_pgd-mask-advedge_mask"].endswith("pgd-mask-advedge/maps-mask.parquet")
    assert "rts" in t.detector_files("cifar10", "resnet20", 1, maps_only=True)
    local = AdvedgeTargets(config(detector={"backbone": {"weights": "/w/vgg16.pth"}}))
    assert "backbone" not in local.detector_files("cifar10", "resnet20", 1)
    with pytest.raises(PlanError, match="not configured"):
        AdvedgeTargets(config(detector={"framework": "cw"}, frameworks=["pgd"])
                       ).detector_attacks()
    # the map job reads the detector interpreters' explainer keys, not their schedules
    ms = t.detector_map_settings(W())
    assert set(ms["detector"]) == {"interpreters", "n_samples", "seed"}
    assert "stage2" not in ms["grad"]
    assert t.robust_runs() == [("cifar10", 1)]
    assert t.robust_inputs(W(dataset="cifar10", seed=1)) == {
        "normal": "results/cifar10/wrn28_10/seed1/clean/model.pt",
        "robust": "results/cifar10/wrn28_10-robust/seed1/clean/model.pt"}
    assert t.blackbox_runs() == [("cifar10", "resnet20", 1), ("cifar100", "resnet20", 1)]
    bb = t.blackbox_inputs(W(dataset="cifar10", model="resnet20", seed=1))
    assert bb["target_model"] == "results/cifar10/densenet40/seed1/clean/model.pt"
    tables = set(t.targets())
    for n in ("table3", "table4", "table5", "table6", "table11"):
        assert f"results/tables/advedge_{n}.md" in tables


def test_part3_config_errors_name_the_key():
    from xaisec.config import ConfigError

    base = config()
    import copy

    bad = copy.deepcopy(base)
    bad["models"]["resnet20-at"]["init"] = "vgg16_gap"
    with pytest.raises(ConfigError, match="models.resnet20-at.init.*same architecture"):
        validate(bad)
    bad = copy.deepcopy(base)
    bad["models"]["resnet20-at"]["defense"]["gama"] = 0.1
    with pytest.raises(ConfigError, match="models.resnet20-at.defense.gama.*settings: eps"):
        validate(bad)
    bad = copy.deepcopy(base)
    bad["advedge"]["robust"]["robust"] = "wrn-missing"
    with pytest.raises(ConfigError, match="advedge.robust.robust"):
        validate(bad)


def test_training_defense_settings_in_the_registry_match_the_classes():
    import inspect

    from xaisec.defenses import names, spec

    for n in names("training"):
        params = [p for p in inspect.signature(spec(n).load().__init__).parameters
                  if p != "self"]
        assert tuple(params) == spec(n).settings, n


def test_defense_table_puts_the_papers_number_beside_the_oblivious_row(tmp_path):
    from xaisec.papers.advedge.defense_report import write_defense_table

    rows = []
    for kn, d, succ in (("oblivious", "none", [1, 1, 1, 1]), ("oblivious", "median", [1, 0, 0, 0]),
                        ("white_box", "median", [1, 1, 0, 0]), ("benign", "median", [1, 1, 1, 0])):
        for i, s in enumerate(succ):
            rows.append({"dataset": "cifar10", "model": "resnet20", "seed": 1,
                         "framework": "pgd" if kn != "benign" else "-",
                         "interpreter": "cam" if kn != "benign" else "-",
                         "variant": "advedge" if kn != "benign" else "-", "defense": d,
                         "knowledge": kn, "sample": i, "success": bool(s)})
    t = write_defense_table(pd.DataFrame(rows), tmp_path / "t.csv", tmp_path / "t.md",
                            [{"dataset": "cifar10", "paper_dataset": "cifar10"}])
    ob = t[(t["knowledge"] == "oblivious") & (t["defense"] == "MS")].iloc[0]
    assert ob["rate"] == 25 and np.isnan(ob["paper"])     # the paper quotes MS for ImageNet only
    wb = t[(t["knowledge"] == "white_box")].iloc[0]
    assert wb["rate"] == 50 and np.isnan(wb["paper"])
    assert t[t["knowledge"] == "benign"]["rate"].iloc[0] == 75
    md = (tmp_path / "t.md").read_text()
    assert "white_box" in md and "MS" in md


def test_blackbox_table_without_a_fooled_surrogate_keeps_its_header(tmp_path):
    from xaisec.papers.advedge.defense_report import BLACKBOX_COLUMNS, write_blackbox_table

    write_blackbox_table(pd.DataFrame(columns=["dataset", "seed", "role"]), tmp_path / "t.csv",
                         tmp_path / "t.md")
    assert list(pd.read_csv(tmp_path / "t.csv").columns) == BLACKBOX_COLUMNS
