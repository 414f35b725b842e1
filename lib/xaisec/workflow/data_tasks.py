"""The data steps (fetch, prepare), one function per workflow rule."""
from __future__ import annotations

from pathlib import Path

from xaisec import io
from xaisec.data import datasets


def fetch_data(dataset: str, raw_dir, record_path, source=None, checksum=None) -> dict:
    """Download (or take from ``source``) and extract ``dataset``; record where its tree is."""
    root = datasets.fetch(dataset, raw_dir, source=source, checksum=checksum)
    rec = {"dataset": dataset, "root": str(Path(root).resolve()),
           "source": source or "official download", "checksum": checksum}
    io.write_json(record_path, rec)
    return rec


def prepare_data(dataset: str, out_dir, record_path=None, image_size: int = 32,
                 shapes: dict | None = None) -> dict:
    """Write the canonical compact form (train.npz, test.npz, manifest.json) of ``dataset``."""
    if dataset == "imagenet":
        from xaisec.data.imagenet import INPUT_SIZE

        root = io.read_json(record_path)["root"]
        return datasets.prepare("imagenet", out_dir, raw_root=root, image_size=INPUT_SIZE)
    if dataset == "shapes":
        shapes = shapes or {}
        return datasets.prepare("shapes", out_dir, image_size=image_size,
                                seed=shapes.get("seed", 0),
                                shapes_train=shapes.get("n_train", 10000),
                                shapes_test=shapes.get("n_test", 2000))
    root = io.read_json(record_path)["root"]
    return datasets.prepare(dataset, out_dir, raw_root=root, image_size=image_size)
