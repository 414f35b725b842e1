"""One function per workflow step; ``scripts/<rule>.py`` call exactly one of these."""
from __future__ import annotations

from pathlib import Path

from . import datasets, io
from .evaluate import accuracy_under_defenses
from .models import ModelSpec, build_model
from .train import TrainConfig, fit


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
    if dataset == "shapes":
        shapes = shapes or {}
        return datasets.prepare("shapes", out_dir, image_size=image_size,
                                seed=shapes.get("seed", 0),
                                shapes_train=shapes.get("n_train", 10000),
                                shapes_test=shapes.get("n_test", 2000))
    root = io.read_json(record_path)["root"]
    return datasets.prepare(dataset, out_dir, raw_root=root, image_size=image_size)


def model_spec(model_cfg: dict, num_classes: int) -> ModelSpec:
    return ModelSpec(arch=model_cfg["arch"], num_classes=num_classes,
                     variant=model_cfg.get("variant", "bn"),
                     activation=model_cfg.get("activation", "relu"),
                     beta=model_cfg.get("beta", 5.0))


def train_clean(data_dir, out_dir, model_cfg: dict, train_cfg: dict, seed: int, device="cpu",
                provenance: dict | None = None, meta: dict | None = None) -> dict:
    """Train one clean model; writes model.pt, model.json, metrics.csv and provenance.json."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    manifest = datasets.load_manifest(data_dir)
    train = datasets.load_split(data_dir / "train.npz")
    test = datasets.load_split(data_dir / "test.npz")
    spec = model_spec(model_cfg, len(manifest["class_names"]))
    io.seed_everything(seed)
    model = build_model(spec)
    info = fit(model, train.x, train.y, test.x, test.y, TrainConfig(**train_cfg), out_dir, seed,
               device=device, meta={**(meta or {}), "dataset": manifest["dataset"]})
    if provenance is not None:
        io.write_json(out_dir / "provenance.json", provenance)
    return info


def evaluate_clean(model_path, data_dir, out_path, evaluation: dict, device="cpu",
                   meta: dict | None = None) -> dict:
    """Clean test accuracy of one model with its own BatchNorm and with each defense."""
    model, model_meta = io.load_model(model_path, device)
    test = datasets.load_split(Path(data_dir) / "test.npz")
    res = accuracy_under_defenses(model, test.x, test.y, defenses=evaluation["defenses"],
                                  batch_size=evaluation["batch_size"],
                                  n_samples=evaluation["n_samples"], seed=evaluation["seed"],
                                  device=device)
    rec = {**(meta or {}), **res, "model_path": str(model_path),
           "train_seconds": model_meta.get("train_seconds"),
           "epochs": model_meta.get("train", {}).get("epochs"),
           "model_fingerprint": model_meta.get("fingerprint")}
    io.write_json(out_path, rec)
    return rec
