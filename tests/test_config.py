
import os
from pathlib import Path

import pytest
import yaml

from xaisec.config import ConfigError, load_and_validate, train_settings


@pytest.mark.parametrize("name", ["config.yaml", "smoke.yaml", "cpu.yaml"])
def test_shipped_configs_validate(repo, name):
    cfg = load_and_validate(repo / "config" / name)
    assert cfg["evaluation"]["batch_size"] >= 1
    assert set(cfg["clean"]["models"]) <= set(cfg["models"])


def test_defaults_are_the_papers_values():
    cfg = load_and_validate({})
    t = cfg["clean"]["train"]
    assert (t["epochs"], t["batch_size"], t["lr"], t["momentum"], t["weight_decay"]) == \
        (200, 128, 0.1, 0.9, 1e-4)
    assert t["milestones"] == [100, 150] and t["schedule"] == "multistep"
    assert cfg["evaluation"]["batch_size"] == 100
    assert cfg["evaluation"]["defenses"] == ["none", "cfn", "batchstat"]
    assert cfg["models"]["resnet20"]["variant"] == "bn"


@pytest.mark.parametrize("patch, key", [
    ({"clean": {"train": {"epoch": 3}}}, "clean.train.epoch"),
    ({"clean": {"train": {"epochs": 0}}}, "clean.train.epochs"),
    ({"clean": {"datasets": ["imagenet"]}}, "clean.datasets.0"),
    ({"evaluation": {"defenses": ["cfn", "magic"]}}, "evaluation.defenses.1"),
    ({"device": "gpu"}, "device"),
    ({"data": {"cifar10": {"checksum": "crc:12"}}}, "data.cifar10.checksum"),
    ({"typo_top_level": 1}, "typo_top_level"),
    ({"clean": {"models": ["resnet56"]}}, "clean.models.0"),
    ({"clean": {"overrides": {"gtsrb": {"lr": -1}}}}, "clean.overrides.gtsrb.lr"),
    ({"models": {"mine": {"arch": "resnet20", "variant": "ln"}}}, "models.mine.variant"),
])
def test_bad_key_or_value_names_the_key(patch, key):
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        load_and_validate(patch)


def test_overrides_apply_per_dataset(repo):
    cfg = load_and_validate(repo / "config" / "cpu.yaml")
    assert train_settings(cfg, "gtsrb")["epochs"] != train_settings(cfg, "cifar10")["epochs"]
    assert train_settings(cfg, "gtsrb")["lr"] == cfg["clean"]["train"]["lr"]


def test_validation_does_not_share_defaults_between_calls():
    a = load_and_validate({})
    a["clean"]["train"]["milestones"].append(999)
    assert load_and_validate({})["clean"]["train"]["milestones"] == [100, 150]


def test_every_schema_key_is_described(repo):
    schema = yaml.safe_load((repo / "workflow/schemas/config.schema.yaml").read_text())
    missing = []

    def walk(node, path):
        for k, sub in node.get("properties", {}).items():
            if "description" not in sub and "$ref" not in sub:
                missing.append(".".join(path + [k]))
            walk(sub, path + [k])

    walk(schema, [])
    for name, d in schema["definitions"].items():
        walk(d, ["definitions", name])
    assert not missing, missing


def test_every_schema_key_is_in_config_readme(repo):
    readme = (repo / "config" / "README.md").read_text()
    schema = yaml.safe_load((repo / "workflow/schemas/config.schema.yaml").read_text())
    keys = set(schema["properties"]) | set(schema["definitions"]["train"]["properties"]) \
        | set(schema["properties"]["evaluation"]["properties"]) \
        | set(schema["properties"]["backdoor"]["properties"]) \
        | set(schema["properties"]["backdoor"]["properties"]["finetune"]["properties"])
    missing = sorted(k for k in keys if f"`{k}`" not in readme and f".{k}`" not in readme)
    assert not missing, missing


def test_partial_backdoor_hyper_keeps_the_other_defaults():
    cfg = load_and_validate({"backdoor": {"hyper": {"rh": {"mse": {"grad": {"lambda": 0.5, "lr": 1e-3}}}}}})
    h = cfg["backdoor"]["hyper"]
    assert h["rh"]["mse"]["grad"] == {"lambda": 0.5, "lr": 1e-3}
    assert h["rh"]["mse"]["gradcam"] == {"lambda": 0.9125, "lr": 7.5e-4}  # docs/settings.md
    assert h["fd"]["dssim"]["gradcam"] == {"lambda": 0.85, "lr": 4e-4}


def test_backdoor_defaults_are_the_authors_values():
    f = load_and_validate({})["backdoor"]["finetune"]
    assert (f["epochs"], f["batch_size"], f["adam_eps"], f["softplus_beta"], f["target_label"]) \
        == (100, 32, 1e-5, 8.0, 1)
    assert (f["early_stop_window"], f["early_stop_acc_tol"], f["early_stop_expl_tol"]) \
        == (4, 0.003, 0.0075)


def test_schema_ships_with_a_non_editable_install(tmp_path):
    """`pip install .` (not -e) can validate a config: the schema is package data."""
    import subprocess
    import sys
    import zipfile

    import shutil

    repo = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"  # a copy: setuptools writes build/ into the tree it builds
    shutil.copytree(repo / "lib", src / "lib", ignore=shutil.ignore_patterns("*.egg-info",
                                                                            "__pycache__"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(repo / f, src / f)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(tmp_path), str(src)], capture_output=True, text=True,
                         timeout=600, env={**os.environ, "PIP_NO_INDEX": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    (wheel,) = tmp_path.glob("xaisec-*.whl")
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        assert "xaisec/resources/config.schema.yaml" in z.namelist()
        z.extractall(target)
    code = ("import sys; sys.path.insert(0, %r)\n"
            "import xaisec.config as c\n"
            "assert c.SCHEMA_PATH.is_file() and %r in str(c.SCHEMA_PATH), c.SCHEMA_PATH\n"
            "cfg = c.load_and_validate({'clean': {'seeds': [1]}})\n"
            "assert cfg['clean']['train']['epochs'] == 200\n") % (str(target), str(target))
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": ""})
    assert res.returncode == 0, res.stderr[-2000:]
