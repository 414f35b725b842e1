"""The model steps every paper shares (clean training, pretrained models, clean accuracy), one
function per workflow rule; the data steps are in :mod:`xaisec.workflow.data_tasks`, each
paper's own steps in ``xaisec.papers.<paper>.tasks``."""
from __future__ import annotations

from pathlib import Path

from xaisec import io
from xaisec.data import datasets
from xaisec.evaluate import accuracy_under_defenses
from xaisec.models.classifiers import ModelSpec, build_model
from xaisec.train import TrainConfig, fit


def model_spec(model_cfg: dict, num_classes: int) -> ModelSpec:
    return ModelSpec(arch=model_cfg["arch"], num_classes=num_classes,
                     variant=model_cfg.get("variant", "bn"),
                     activation=model_cfg.get("activation", "relu"),
                     beta=model_cfg.get("beta", 5.0))


def pretrained_model(arch: str, weights, out_dir, provenance: dict | None = None,
                     meta: dict | None = None) -> dict:
    """Write a pretrained ImageNet network (torchvision weights name, e.g. ``IMAGENET1K_V1``,
    or a local state-dict file; ``"random"``: random initialisation, for tests) as this
    project's checkpoint (model.pt + model.json), in place of clean training."""
    from xaisec.models.imagenet import build_imagenet_model

    out_dir = Path(out_dir)
    model = build_imagenet_model(arch, None if weights == "random" else weights)
    model.spec = ModelSpec(arch=arch, num_classes=1000)
    info = {**(meta or {}), "arch": arch, "weights": str(weights),
            "loaded": getattr(model, "weights", None)}
    io.save_model(model, out_dir / "model.pt", info)
    if provenance is not None:
        io.write_json(out_dir / "provenance.json", provenance)
    return info


def train_clean(data_dir, out_dir, model_cfg: dict, train_cfg: dict, seed: int, device="cpu",
                provenance: dict | None = None, meta: dict | None = None,
                init_path=None) -> dict:
    """Train one model (not backdoored); writes model.pt, model.json, metrics.csv and
    provenance.json. ``model_cfg["defense"]``: a training-time defense ({name, settings});
    ``init_path``: the checkpoint it starts from (``model_cfg["init"]``, a fine-tuning)."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    manifest = datasets.load_manifest(data_dir)
    train = datasets.load_split(data_dir / "train.npz")
    test = datasets.load_split(data_dir / "test.npz")
    spec = model_spec(model_cfg, len(manifest["class_names"]))
    io.seed_everything(seed)
    model = build_model(spec)
    init = None
    if init_path is not None:
        start, start_meta = io.load_model(init_path, "cpu")
        if start.spec.arch != spec.arch or start.spec.num_classes != spec.num_classes:
            raise ValueError(f"{init_path}: a {start.spec.arch} with {start.spec.num_classes} "
                             f"classes cannot start a {spec.arch} with {spec.num_classes}")
        model.load_state_dict(start.state_dict())
        init = {"path": str(init_path), "fingerprint": start_meta.get("fingerprint")}
    defense = None
    if model_cfg.get("defense"):
        from xaisec.defenses import get_defense

        d = dict(model_cfg["defense"])
        defense = get_defense(d.pop("name"))(**d)
    info = fit(model, train.x, train.y, test.x, test.y, TrainConfig(**train_cfg), out_dir, seed,
               device=device, meta={**(meta or {}), "dataset": manifest["dataset"]},
               defense=defense, init=init)
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
