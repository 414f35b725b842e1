"""The ImageNet path of the workflow (FGSM-XAI's and EXIAA's setting) on a stand-in made here:
a few images with masks in ImageNetV2's numbered-folder layout and random-weight torchvision
networks (no ImageNet and no pretrained weights exist offline)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from xaisec import io
from xaisec.workflow.tasks import pretrained_model

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def make_standin(root: Path, n_per_class=2, classes=(0, 1, 2)):
    rng = np.random.default_rng(0)
    for c in classes:
        for i in range(n_per_class):
            img = (rng.random((80, 96, 3)) * 255).astype(np.uint8)
            mask = np.zeros((80, 96), np.uint8)
            mask[20:60, 30:70] = 255
            for sub, arr, ext in (("images", img, "JPEG"), ("masks", mask, "png")):
                d = root / sub / str(c)
                d.mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(d / f"img{c}_{i}.{ext}")


def test_pretrained_model_checkpoint_round_trip(tmp_path, one_thread):
    info = pretrained_model("resnet18", "random", tmp_path)
    assert info["arch"] == "resnet18"
    model, meta = io.load_model(tmp_path / "model.pt")
    assert meta["spec"]["arch"] == "resnet18" and meta["spec"]["num_classes"] == 1000
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert model(x).shape == (2, 1000)
    assert model.gradcam_layer == "net.layer4"


def smk(workdir, config, *args):
    cfg = workdir / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(workdir),
           "--configfile", str(cfg), "--cores", "2", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert res.returncode == 0, f"{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
    return res


def imagenet_config(source):
    return {
        "results": "results/imagenet",
        "data": {"imagenet": {"source": str(source)}},
        "models": {"efficientnet": {"arch": "efficientnet_b0", "weights": "random"},
                   "resnet18": {"arch": "resnet18", "weights": "random"},
                   "resnet50": {"arch": "resnet50", "weights": "random"}},
        "clean": {"datasets": [], "models": []},
        "backdoor": {"experiments": []},
        "fgsmxai": {"datasets": ["imagenet"], "models": ["efficientnet"], "seeds": [0],
                    "n_images": 3, "bim": {"steps": 2},
                    "smoothgrad": {"nt_samples": 2},
                    "lime": {"n_samples": 20, "perturbations_per_eval": 20, "n_segments": 20},
                    "n_examples": 1, "batch_size": 3},
        "exiaa": {"datasets": ["imagenet"], "models": ["resnet18"], "seeds": [0]},
        # AdvEdge on ImageNet (Figures 2-5): no training split, so no RTS (it trains on one)
        "advedge": {"datasets": ["imagenet"], "models": ["resnet50"], "seeds": [0],
                    "interpreters": ["grad", "cam", "mask"], "n_images": 2},
    }


def test_imagenet_plan(tmp_path):
    """The DAG of an ImageNet config: prepared from the folder, pretrained models, no training."""
    make_standin(tmp_path / "imagenet")
    (tmp_path / "config").symlink_to(REPO / "config")
    res = smk(tmp_path, imagenet_config(tmp_path / "imagenet"), "-n", "--quiet", "rules")
    out = res.stdout + res.stderr
    for rule in ("prepare_imagenet", "pretrained_model", "fgsmxai_inputs", "fgsmxai_explain",
                 "exiaa_grid", "exiaa_table", "fgsmxai_table", "advedge_attack",
                 "advedge_box_figure", "advedge_example_figure"):
        assert rule in out, rule
    assert "train_clean" not in out and "prepare_data " not in out


@pytest.mark.slow
@pytest.mark.workflow
def test_imagenet_fgsmxai_end_to_end(tmp_path):
    make_standin(tmp_path / "imagenet")
    (tmp_path / "config").symlink_to(REPO / "config")
    out = tmp_path / "results" / "imagenet"
    smk(tmp_path, imagenet_config(tmp_path / "imagenet"),
        "results/imagenet/tables/fgsmxai_table1.csv", "results/imagenet/figures/fgsmxai_fig6.png")
    t = pd.read_csv(out / "tables" / "fgsmxai_table1.csv")
    assert t.loc[0, "dataset"] == "imagenet" and t.loc[0, "n"] == 3
    assert t[["smoothgrad", "gradcam", "lime"]].notna().all().all()
