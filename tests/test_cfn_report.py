import numpy as np
import pandas as pd
import pytest
import torch
from xaisec.papers.cfn import report as cr
from xaisec import io
from xaisec.models.classifiers import build_model

EXPLAINERS = ("grad", "gradcam", "relevancecam")


def _frame(model, attack, explainer, seed, rng, n=30, defenses=("none", "cfn")):
    rows = []
    for d in defenses:
        for v in ("clean", "triggered"):
            label = np.arange(n) % 3
            pred = np.where(rng.random(n) < 0.7, 1, label) if v == "triggered" else label
            eligible = (v == "triggered") & (attack != "sf") & (label != 1)
            rows.append(pd.DataFrame({
                "defense": d, "variant": v, "sample": np.arange(n), "label": label, "pred": pred,
                "confidence": 0.9, "correct": pred == label, "asr_eligible": eligible,
                "hit_target": eligible & (pred == 1), "error": rng.random(n) * 0.5,
                "src": rng.uniform(-1, 1, n), "src_p": 10.0 ** -rng.uniform(0, 20, n),
                "dataset": "cifar10", "model": model, "seed": seed, "attack": attack,
                "explainer": explainer, "loss": "mse",
            }))
    return pd.concat(rows, ignore_index=True)


@pytest.fixture(scope="module")
def per_sample(tmp_path_factory):
    """One Parquet file per attacked run: nobn / frozenbn / softplus / plain models."""
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("ps")
    paths = []
    for model in ("resnet20-nobn", "resnet20-frozenbn", "resnet20-softplus", "resnet20"):
        for attack in ("sf", "rh", "fd"):
            for e in EXPLAINERS:
                for seed in (1, 2):
                    p = d / f"{model}_{attack}_{e}_{seed}.parquet"
                    _frame(model, attack, e, seed, rng).to_parquet(p)
                    paths.append(p)
    return paths


#: the models' config entries as the workflow passes them (regime read from the entry)
MODELS = {"resnet20-nobn": {"arch": "resnet20", "regime": "nobn"},
          "resnet20-frozenbn": {"arch": "resnet20", "regime": "frozenbn"},
          "resnet20-softplus": {"arch": "resnet20", "regime": "softplus"},
          "resnet20": {"arch": "resnet20", "regime": "bn"}}


def _png_ok(path):
    assert path.exists() and path.stat().st_size > 5000


def test_published_extra_has_tables_5_7_8():
    pub = cr.published_extra()
    assert set(pub["table"]) == {"Table 5", "Table 7", "Table 8"}
    t5 = pub[pub["table"] == "Table 5"].set_index(["row", "column"])
    assert t5.loc[("rh/relevancecam", "frozenbn/asr"), "value"] == pytest.approx(0.86)
    assert t5.loc[("sf/grad", "nobn/error"), ["value", "sd"]].tolist() == [0.23, 0.04]
    assert len(pub[pub["table"] == "Table 8"]) == 9 * 3 + 6  # err, acc, clean + ASR for RH/FD


def test_table5_cells_match_hand_computation(per_sample, tmp_path):
    csv, md = tmp_path / "t5.csv", tmp_path / "t5.md"
    t = cr.write_table5(per_sample, MODELS, csv, md)
    assert csv.exists() and "Table 5" in md.read_text()
    assert len(t) == 9 and list(t["attack"][:3]) == ["SF"] * 3
    ps = pd.concat([pd.read_parquet(p) for p in per_sample])
    for model, lab in (("resnet20-nobn", "No BN"), ("resnet20-frozenbn", "Non-trainable BN")):
        g = ps[(ps["model"] == model) & (ps["attack"] == "rh") & (ps["explainer"] == "gradcam")
               & (ps["defense"] == "none") & (ps["variant"] == "triggered")]
        row = t[(t["attack"] == "RH") & (t["xai"] == "G-C")].iloc[0]
        assert row[f"{lab} µ ± sd"] == f"{g['error'].mean():.2f} ± {g['error'].std():.2f}"
        asr = g["hit_target"].sum() / g["asr_eligible"].sum()
        assert row[f"{lab} ASR"] == pytest.approx(round(asr, 2))
        assert row[f"{lab} n"] == 60  # two seeds pooled
    sf = t[(t["attack"] == "SF") & (t["xai"] == "Grad")].iloc[0]
    assert sf["No BN ASR"] == "N/A" and sf["No BN paper µ ± sd"] == "0.23 ± 0.04"
    rc = t[(t["attack"] == "RH") & (t["xai"] == "R-C")].iloc[0]
    assert rc["Non-trainable BN paper ASR"] == pytest.approx(0.86)
    assert rc["Non-trainable BN paper µ ± sd"] == "0.30 ± 0.10"


def test_table8_softplus_rows_and_paper_values(per_sample, tmp_path):
    t = cr.write_table8(per_sample, MODELS, tmp_path / "t8.csv", tmp_path / "t8.md")
    assert len(t) == 2 * 9  # attack + cfn modes x 9
    att = t[(t["mode"] == "attack") & (t["attack"] == "RH") & (t["xai"] == "R-C")].iloc[0]
    assert att["paper triggered"] == "0.14 ± 0.06" and att["paper asr"] == pytest.approx(0.93)
    assert att["paper triggered_acc"] == pytest.approx(8.83)
    ps = pd.concat([pd.read_parquet(p) for p in per_sample])
    g = ps[(ps["model"] == "resnet20-softplus") & (ps["attack"] == "rh")
           & (ps["explainer"] == "relevancecam") & (ps["defense"] == "none")
           & (ps["variant"] == "triggered")]
    assert att["triggered"] == f"{g['error'].mean():.2f} ± {g['error'].std():.2f}"
    cfn = t[(t["mode"] != "attack")]
    assert (cfn["paper triggered"] == "").all()


def test_table6_matrix(tmp_path):
    t = cr.write_table6(tmp_path / "t6.csv", tmp_path / "t6.md")
    scen = [c for c in t.columns if c.startswith("C")]
    assert scen == ["C1", "C2", "C3", "C4", "C5", "C6"]
    by = t.set_index("option")
    assert by.loc["EXP(T)", scen].tolist() == ["•", "◦", "◦", "◦", "◦", "◦"]
    assert by.loc["ACC", scen].tolist() == ["↑", "↑", "↓", "↓", "↓", "↓"]
    assert "CFN in place of BatchNorm" in by.loc["realised as", "C5"]
    assert "Table 6" in (tmp_path / "t6.md").read_text()


def test_table7_mean_sd(tmp_path):
    recs = [{"scenario": "C3", "attack": "rh", "explainer": e, "orig_acc": 0.9 + i / 100,
             "bn_acc": 0.1 + i / 10, "cfn_acc": 0.4} for i, e in enumerate(EXPLAINERS)]
    recs.append({"scenario": "C5", "attack": "sf", "explainer": "grad", "orig_acc": 0.91,
                 "bn_acc": 0.12, "cfn_acc": 0.47})
    t = cr.write_table7(recs, tmp_path / "t7.csv", tmp_path / "t7.md").set_index("Att./Def.")
    bn = np.array([10.0, 20.0, 30.0])
    assert t.loc["C3 & C4", "BN-Acc"] == f"{bn.mean():.2f} ± {bn.std(ddof=1):.2f}"
    assert t.loc["C3 & C4", "orig_acc_mean"] == pytest.approx(91.0)
    assert t.loc["C5 & C6", "CFN-Acc"] == "47.00 ± 0.00"
    assert t.loc["C3 & C4", "paper CFN-Acc"] == "37.5 ± 13.6"
    assert t.loc["C5 & C6", "paper BN-Acc"] == "12.45 ± 3.5"
    for row in ("C3 & C4", "C5 & C6"):  # every published cell is shown
        assert t.loc[row, "paper Org (Acc)"] == "91.3 ± 0.7"


def test_src_figures(per_sample, tmp_path):
    assert {7, 12, 13, 14, 15, 16, 17, 18} <= set(cr.SRC_FIGURES)
    assert cr.SRC_FIGURES[15]["models"] == "nobn" and cr.SRC_FIGURES[16]["value"] == "src_p"
    fig = cr.src_figure(per_sample, 7, [tmp_path / "f7.png"], MODELS)
    _png_ok(tmp_path / "f7.png")
    assert all(ax.get_yscale() == "linear" for ax in fig.axes)
    assert "resnet20-softplus" in fig.axes[0].get_title()
    fig = cr.src_figure(per_sample, 12, [tmp_path / "f12.png", tmp_path / "f12.pdf"], MODELS)
    _png_ok(tmp_path / "f12.png")
    assert (tmp_path / "f12.pdf").exists()
    assert all(ax.get_yscale() == "log" for ax in fig.axes)
    assert len(fig.axes) == 2 and "resnet20:" in fig.axes[0].get_title()  # plain BN, SF + RH
    assert any(np.allclose(line.get_ydata(), 0.05) for line in fig.axes[0].get_lines())


def test_weight_figure_and_table(tmp_path):
    paths = {}
    for name, variant in (("o_bn", "bn"), ("o_nobn", "nobn")):
        m = build_model(arch="resnet20", variant=variant)
        with torch.no_grad():  # fresh BN gamma/beta are constant: no CKA (nan) for them
            for p in m.parameters():
                p.add_(0.1 * torch.randn_like(p))
        io.save_model(m, tmp_path / f"{name}.pt", {})
        paths[name] = tmp_path / f"{name}.pt"
        torch.manual_seed(1)
        for i in range(2):
            with torch.no_grad():
                for p in m.parameters():
                    p.add_(0.05 * torch.randn_like(p))
            io.save_model(m, tmp_path / f"{name}_att{i}.pt", {})
    pairs = [{"regime": "bn", "model": "resnet20", "original": paths["o_bn"],
              "attacked": paths["o_bn"]}]
    pairs += [{"regime": r, "model": k, "original": paths[o], "attacked": tmp_path / f"{o}_att{i}.pt"}
              for r, k, o in (("bn", "resnet20", "o_bn"), ("nobn", "resnet20-nobn", "o_nobn"))
              for i in range(2)]
    t = cr.weight_table(pairs)
    same = t[t["attacked"] == str(paths["o_bn"])]
    assert np.allclose(same["cka"], 1) and np.allclose(same["spearman"], 1)
    assert same["layer"].iloc[0] == "conv1.weight"
    assert (t[t["attacked"] != str(paths["o_bn"])]["cka"] < 1).any()
    fig = cr.weight_figure(pairs, 3, [tmp_path / "f3.png"], table=t)
    _png_ok(tmp_path / "f3.png")
    assert len(fig.axes) == 3  # BN top, frozen BN (empty) and no BN below
    cr.weight_figure([], 11, [tmp_path / "f11.png"], table=t[t["regime"] == "bn"])
    _png_ok(tmp_path / "f11.png")


def test_batchsize_figures(tmp_path):
    rows = []
    for bs in (1, 2, 4, 8, 16, 32, 64, 128):
        rows.append({"batch_size": bs, "mode": "cfn", "asr": 0.2 / bs, "error_mean": 0.1 / bs ** .5,
                     "error_sd": 0.02, "accuracy": 0.9 - 0.4 / bs})
        rows.append({"batch_size": bs, "mode": "none", "asr": 1.0, "error_mean": 0.3,
                     "error_sd": 0.05, "accuracy": 0.9})
        rows.append({"batch_size": bs, "mode": "original", "asr": 0.01, "error_mean": 0.0,
                     "error_sd": 0.0, "accuracy": 0.91})
    csv = tmp_path / "bs.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    f8 = cr.batchsize_figure(csv, 8, [tmp_path / "f8.png"])
    assert not (tmp_path / "f9.png").exists()  # one figure per call
    f9 = cr.batchsize_figure(csv, 9, [tmp_path / "f9.png"])
    _png_ok(tmp_path / "f8.png")
    _png_ok(tmp_path / "f9.png")
    assert f8.axes[0].get_xscale() == "log" and len(f9.axes[0].get_lines()) == 3
    pd.DataFrame([{**rows[0], "mode": "weird"}]).to_csv(csv, index=False)
    with pytest.raises(ValueError, match="unknown mode"):
        cr.batchsize_figure(csv, 8, [tmp_path / "x.png"])


def test_regime_comes_from_the_entry_not_the_key(per_sample, tmp_path):
    """A VGG-13 with frozen BN is not Table 5's ResNet-20, whatever its key says; a key the
    config does not describe is an error."""
    vgg = dict(MODELS, **{"resnet20-frozenbn": {"arch": "vgg13", "regime": "frozenbn"}})
    t = cr.table5(pd.concat([pd.read_parquet(p) for p in per_sample]), vgg)
    assert not any("Non-trainable" in c for c in t.columns)
    renamed = dict(MODELS, **{"resnet20-softplus": {"arch": "resnet20", "regime": "bn"}})
    with pytest.raises(ValueError, match="Softplus"):
        cr.write_table8(per_sample, renamed, tmp_path / "t8.csv", tmp_path / "t8.md")
    with pytest.raises(ValueError, match="no config entry"):
        cr.write_table5(per_sample, {"resnet20": MODELS["resnet20"]}, tmp_path / "a.csv",
                        tmp_path / "a.md")
