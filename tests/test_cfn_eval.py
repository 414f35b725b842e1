import numpy as np
import pandas as pd
import pytest

from xaisec.cache import ExplanationSet
from xaisec.papers.cfn.evaluation import compare, comparison, paper_table, summarize
from xaisec.papers.cfn.caches import batch_plan


def _set(maps, pred, label):
    n = len(maps)
    return ExplanationSet(maps=maps.astype(np.float32), sample=np.arange(n), label=label,
                          pred=pred, confidence=np.full(n, 0.9, np.float32), target=pred)


def _case():
    rng = np.random.default_rng(0)
    n = 40
    label = (np.arange(n) % 4).astype(np.int64)
    orig_c = rng.random((n, 1, 8, 8))
    orig_t = rng.random((n, 1, 8, 8))
    original = {"clean": _set(orig_c, label, label), "triggered": _set(orig_t, label, label)}
    hit = np.where(label == 1, 3, 1)  # every triggered image predicted as the target 1 ...
    hit[:4] = label[:4]                # ... except the first four
    attacked = {
        "none": {"clean": _set(orig_c, label, label), "triggered": _set(1 - orig_t, hit, label)},
        "cfn": {"clean": _set(orig_c * 2, label, label), "triggered": _set(orig_t, label, label)},
    }
    return original, attacked, label


def test_compare_errors_src_acc_asr():
    original, attacked, label = _case()
    ps = compare(original, attacked, "rh", "mse", target_label=1)
    s = summarize(ps).set_index(["defense", "variant"])
    assert s.loc[("none", "clean"), "error_mean"] == pytest.approx(0, abs=1e-12)
    assert s.loc[("none", "clean"), "src_median"] == pytest.approx(1)
    assert s.loc[("cfn", "clean"), "error_mean"] == pytest.approx(0, abs=1e-6)  # max-normalised
    assert s.loc[("none", "triggered"), "src_median"] == pytest.approx(-1)
    eligible = label != 1
    expected_asr = ((np.where(label == 1, 3, 1) == 1) & eligible)[4:].sum() / eligible.sum()
    # the first four keep their label: the ones among them with label != 1 are misses
    assert s.loc[("none", "triggered"), "asr"] == pytest.approx(expected_asr)
    assert s.loc[("cfn", "triggered"), "asr"] == 0
    assert s.loc[("none", "clean"), "acc"] == 1
    assert np.isnan(s.loc[("none", "clean"), "asr"])


def test_sf_has_no_asr_and_reference_option():
    original, attacked, _ = _case()
    ps = compare(original, attacked, "sf", "mse")
    assert summarize(ps)["asr"].isna().all()
    same = summarize(compare(original, attacked, "rh", "mse", triggered_reference="same_input"))
    clean = summarize(compare(original, attacked, "rh", "mse", triggered_reference="clean_input"))
    a = same.set_index(["defense", "variant"]).loc[("cfn", "triggered"), "error_mean"]
    b = clean.set_index(["defense", "variant"]).loc[("cfn", "triggered"), "error_mean"]
    assert a == pytest.approx(0, abs=1e-9) and b > 0.01


def test_mismatched_samples_are_refused():
    original, attacked, _ = _case()
    attacked["none"]["clean"].sample = attacked["none"]["clean"].sample[::-1].copy()
    with pytest.raises(ValueError, match="different samples"):
        compare(original, attacked, "rh", "mse")


def test_paper_table_layout_and_comparison():
    original, attacked, _ = _case()
    ps = compare(original, attacked, "rh", "mse")
    ps["attack"], ps["explainer"], ps["loss"], ps["dataset"] = "rh", "gradcam", "mse", "cifar10"
    s = summarize(ps)
    t = paper_table(s, by_attack=False)
    assert list(t["mode"]) == ["attack", "defense (cfn)"]
    assert {"triggered", "triggered_acc", "asr", "clean", "clean_acc"} <= set(t.columns)
    pub = pd.DataFrame([{"paper": "cfn", "table": "Table 2", "dataset": "cifar10", "attack": "rh",
                         "mode": "attack", "xai": "gradcam", "loss": "mse",
                         "column": "asr", "value": 1.0, "sd": np.nan}])
    c = comparison(s, pub, "cifar10", "Table 2")
    assert c.loc[0, "ours"] == pytest.approx(s[(s.defense == "none") & (s.variant == "triggered")]["asr"].iloc[0])


def test_batch_plans():
    sep = batch_plan(250, 100, "separate")
    assert [len(p) for p, _ in sep] == [100, 100, 50, 100, 100, 50]
    assert all(not t.any() for _, t in sep[:3]) and all(t.all() for _, t in sep[3:])
    mixed = batch_plan(200, 100, "mixed")
    assert all(len(p) == 100 and t.sum() == 50 for p, t in mixed)
    covered = np.concatenate([p[t] for p, t in mixed])
    assert sorted(covered) == list(range(200))
    with pytest.raises(ValueError, match="composition"):
        batch_plan(10, 5, "random")
