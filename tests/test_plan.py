"""The torch-free plan: which runs each CFN table and figure reads, and what each rule's
params hold. Runs without Snakemake and without torch."""
import copy
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from xaisec.config import ConfigError, load_and_validate, validate
from xaisec.papers.cfn.targets import SRC_FIGURES, TABLES, CfnTargets

REPO = Path(__file__).resolve().parents[1]


def load(name):
    return yaml.safe_load((REPO / "config" / name).read_text())


class W(dict):
    """A wildcards stand-in: attribute and mapping access."""

    __getattr__ = dict.__getitem__


def table_inputs(config):
    cfn = CfnTargets(validate(copy.deepcopy(config)))
    out = {n: cfn.table_inputs(W(n=str(n))) for n in TABLES if cfn.table_runs(n)}
    out["comparison"] = cfn.comparison_inputs(W())
    out.update({f"fig{n}": cfn.src_inputs(W(n=str(n))) for n in (5, 6, 12, 13)
                if cfn.src_runs(n)})
    return out


@pytest.mark.parametrize("name", ["smoke.yaml", "cpu.yaml", "config.yaml"])
def test_tables_1_4_do_not_depend_on_the_order_or_other_models(name):
    cfg = load(name)
    base = table_inputs(cfg)
    assert base, name
    for files in base.values():  # only the BatchNorm ResNet-20's runs
        assert files and all("/resnet20/" in f for f in files), files
    reordered = copy.deepcopy(cfg)
    exps = reordered.setdefault("backdoor", {}).get("experiments") or \
        copy.deepcopy(validate(copy.deepcopy(cfg))["backdoor"]["experiments"])
    reordered["backdoor"]["experiments"] = list(reversed(exps))
    assert table_inputs(reordered) == base
    added = copy.deepcopy(reordered)
    added.setdefault("models", copy.deepcopy(validate(copy.deepcopy(cfg))["models"]))
    added["models"]["resnet20-b"] = {"arch": "resnet20"}
    added["backdoor"]["experiments"].insert(0, {
        "datasets": ["cifar10", "gtsrb", "shapes"], "models": ["resnet20-b", "resnet20-softplus"],
        "attacks": ["sf", "rh", "fd"], "explainers": ["grad", "gradcam", "relevancecam"],
        "losses": ["mse", "dssim"]})
    assert table_inputs(added) == base


def test_regime_and_arch_come_from_the_config_entry():
    cfg = validate(load("config.yaml"))
    cfn = CfnTargets(cfg)
    t5 = cfn.table5_inputs(W())
    assert t5 and not any("vgg13" in f for f in t5)  # vgg13-frozenbn is not Table 5's ResNet-20
    assert {f.split("/")[2] for f in t5} == {"resnet20-nobn", "resnet20-frozenbn"}
    # a key that names no regime: the entry decides
    cfg2 = copy.deepcopy(load("smoke.yaml"))
    cfg2["models"]["plainkey"] = {"arch": "resnet20", "variant": "nobn"}
    cfg2["models"]["looks-nobn"] = {"arch": "resnet20"}
    cfg2["backdoor"]["experiments"].append({"datasets": ["shapes"], "models": ["plainkey",
                                            "looks-nobn"], "attacks": ["rh"],
                                            "explainers": ["gradcam"], "losses": ["mse"]})
    cfn2 = CfnTargets(validate(cfg2))
    t5 = cfn2.table5_inputs(W())
    assert any("/plainkey/" in f for f in t5) and not any("/looks-nobn/" in f for f in t5)
    assert cfn2.table5_models(W())["plainkey"] == {"arch": "resnet20", "regime": "nobn"}
    assert not any("/looks-nobn/" in f for f in cfn2.src_inputs(W(n="5")))
    for n, spec in SRC_FIGURES.items():
        if cfn2.src_runs(n) and spec["models"] != "bn":
            assert all(cfn2.model_info([r[1]])[r[1]]["regime"] == spec["models"]
                       for r in cfn2.src_runs(n))


def test_a_table_cell_never_mixes_models(tmp_path):
    from xaisec.papers.cfn.evaluation import comparison, paper_table
    from xaisec.papers.cfn.report import write_cfn_table

    rows = []
    for m in ("resnet20", "resnet20-nobn"):
        for v in ("clean", "triggered"):
            rows.append({"dataset": "shapes", "model": m, "attack": "rh", "explainer": "gradcam",
                         "loss": "mse", "defense": "none", "variant": v, "n": 10,
                         "error_mean": 0.1, "error_sd": 0.01, "src_median": 0.5, "acc": 0.9,
                         "asr": 0.5})
    summary = pd.DataFrame(rows)
    with pytest.raises(ValueError, match="models"):
        paper_table(summary, by_attack=False)
    paper_table(summary[summary["model"] == "resnet20"], by_attack=False)
    pub = pd.DataFrame([{"table": "Table 2", "dataset": "cifar10", "attack": "rh",
                         "mode": "attack", "xai": "gradcam", "loss": "mse",
                         "column": "clean_acc", "value": 0.9, "sd": None}])
    with pytest.raises(ValueError, match="models"):
        comparison(summary, pub, "cifar10", "Table 2")
    per_sample = tmp_path / "ps.parquet"
    pd.DataFrame([{"model": "resnet20-nobn", "dataset": "shapes"}]).to_parquet(per_sample)
    with pytest.raises(ValueError, match="resnet20-nobn"):
        write_cfn_table([per_sample], {"model": "resnet20", "table": "Table 2",
                                       "by_attack": False, "dataset": "shapes",
                                       "losses": ["mse"]}, tmp_path / "t.csv", tmp_path / "t.md")


def test_params_hold_only_the_keys_their_jobs_read():
    cfg = validate(load("smoke.yaml"))
    cfn = CfnTargets(cfg)
    assert "error_normalization" not in cfn.explain_evaluation()
    assert set(cfn.backdoor_evaluation()) == {"defenses", "error_normalization",
                                              "triggered_reference"}
    assert cfn.xai(W(explainer="gradcam")) == {}
    assert cfn.xai(W(explainer="relevancecam")) == {"relevancecam_weighting": "spatial"}
    from xaisec.papers.exiaa.targets import ExiaaTargets
    from xaisec.papers.fgsmxai.targets import FgsmxaiTargets

    f = FgsmxaiTargets(cfg)
    assert "lime" not in f.inputs_settings() and "smoothgrad" not in f.inputs_settings()
    assert "lime" in f.explain_settings(W(fxm="lime"))
    assert "lime" not in f.explain_settings(W(fxm="gradcam"))
    e = ExiaaTargets(cfg)
    assert "ig" in e.grid_settings(W(exm="ig", selection="runnerup"))
    assert "ig" not in e.grid_settings(W(exm="saliency", selection="runnerup"))
    assert "figA1" in e.grid_settings(W(exm="saliency", selection="top"))


@pytest.mark.parametrize("change, key", [
    ({"evaluation": {"batch_size": 300}}, "evaluation.batch_size"),
    ({"backdoor": {"ablation": {"batch_sizes": [1, 128], "n_samples": 64}}},
     "backdoor.ablation.batch_sizes.1"),
    ({"fgsmxai": {"models": ["nope"]}}, "fgsmxai.models.0"),
    ({"exiaa": {"models": ["nope"]}}, "exiaa.models.0"),
    ({"backdoor": {"tables": {"model": "nope"}}}, "backdoor.tables.model"),
])
def test_startup_errors_name_the_key(change, key):
    cfg = load("smoke.yaml")
    for section, sub in change.items():
        target = cfg.setdefault(section, {})
        for k, v in sub.items():
            if isinstance(v, dict):
                target.setdefault(k, {}).update(v)
            else:
                target[k] = v
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_and_validate(cfg)


def test_planning_imports_no_torch():
    code = ("import sys; sys.path.insert(0, 'lib')\n"
            "import yaml\n"
            "from xaisec.config import validate\n"
            "from xaisec.papers.cfn.targets import CfnTargets\n"
            "from xaisec.papers.fgsmxai.targets import FgsmxaiTargets\n"
            "from xaisec.papers.exiaa.targets import ExiaaTargets\n"
            "from xaisec.workflow.codehash import code_hash\n"
            "import xaisec.defenses, xaisec.catalog\n"
            "cfg = validate(yaml.safe_load(open('config/config.yaml')))\n"
            "assert CfnTargets(cfg).targets()\n"
            "heavy = [m for m in ('torch', 'matplotlib', 'seaborn', 'pandas') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
