"""Rule fetch_data notices a local data source replaced at the same path (issue 10, item 5):
a newer archive by its mtime (the source is an input), one with an older mtime (``cp -p``)
or a folder whose files changed in place by the source's signature (a param). Tiny data; a
real first run (a --touch run records no params to compare with), then dry runs."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from xaisec.data import datasets as D

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
RESULTS = "results/t"


def _image_folder(root: Path, value: int, classes) -> Path:
    """train/<class>/0.png and test/<class>/0.png, every pixel of class i = value + i."""
    for split in ("train", "test"):
        for i, c in enumerate(classes):
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((32, 32, 3), value + i, np.uint8)).save(d / "0.png")
    return root


def _archive(wd: Path, value: int) -> Path:
    """wd/src/cifar.zip: a CIFAR-10 image-folder tree (all ten classes) in a zip."""
    tree = _image_folder(wd / f"tree{value}", value, D.CIFAR10_CLASSES)
    out = wd / "src" / "cifar.zip"
    out.parent.mkdir(exist_ok=True)
    tmp = shutil.make_archive(str(wd / f"cifar{value}"), "zip", tree)
    os.replace(tmp, out)
    return out


def smk(wd: Path, *args) -> str:
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(wd),
           "--configfile", str(wd / "config.yaml"), "--cores", "2",
           f"{RESULTS}/data/cifar10/manifest.json", f"{RESULTS}/data/gtsrb/manifest.json", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    text = res.stdout + res.stderr
    assert res.returncode == 0, text[-5000:]
    return text


def planned(text: str) -> set[tuple[str, str]]:
    """(rule, data set) of every data job a dry run (``-n``) would run."""
    return set(re.findall(r"^rule (\w+):\n(?:    .*\n)*?    output: " + RESULTS
                          + r"/data/(\w+)/", text, re.M))


@pytest.mark.workflow
def test_replaced_local_source_is_fetched_again(tmp_path):
    wd = tmp_path
    (wd / "config").symlink_to(REPO / "config")  # the Snakefile's default configfile
    arc = _archive(wd, 10)
    folder = _image_folder(wd / "gtsrb", 50, ["0", "1"])  # GTSRB as an image folder, in place
    (wd / "config.yaml").write_text(yaml.safe_dump({
        "results": RESULTS,
        # relative to the working directory Snakemake runs in (-d)
        "data": {"cifar10": {"source": "src/cifar.zip"}, "gtsrb": {"source": "gtsrb"}},
        "clean": {"datasets": [], "models": []},
        "backdoor": {"experiments": []},
        "fgsmxai": {"datasets": []},
        "exiaa": {"datasets": []},
    }))
    smk(wd)
    out = wd / RESULTS / "data"
    assert D.load_split(out / "cifar10" / "test.npz").x[0, 0, 0, 0] == 10
    assert D.load_split(out / "gtsrb" / "test.npz").x[1, 0, 0, 0] == 51
    assert "Nothing to be done" in smk(wd, "-n")

    # another archive at the same path, with an mtime before the first run's outputs (cp -p):
    # Snakemake's mtime trigger alone would not see it
    st = arc.stat()
    arc = _archive(wd, 100)
    os.utime(arc, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))
    assert os.stat(arc).st_mtime < os.stat(out / "cifar10" / "raw.json").st_mtime
    # a folder source with an image rewritten in place (the folder's own mtime stays)
    img = folder / "test" / "1" / "0.png"
    dir_mtime = img.parent.stat().st_mtime_ns
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(img)
    assert img.parent.stat().st_mtime_ns == dir_mtime

    text = smk(wd, "-n")
    assert planned(text) == {(r, d) for r in ("fetch_data", "prepare_data")
                             for d in ("cifar10", "gtsrb")}, text
    # (that the rerun extracts and prepares the new archive's data:
    # test_datasets.py::test_fetch_replaced_archive_yields_new_data)
