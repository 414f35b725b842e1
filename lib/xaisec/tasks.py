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


# ---------------------------------------------------------------- CFN: backdoors and caches

def finetune_backdoor(clean_model_path, data_dir, out_dir, attack: str, explainer: str,
                      loss: str, finetune_cfg: dict, hyper: dict, seed: int, device="cpu",
                      provenance: dict | None = None, meta: dict | None = None,
                      xai: dict | None = None) -> dict:
    """Fine-tune one clean model into an explanation-aware backdoor (one attack x explainer x
    loss); writes model.pt, model.json, metrics.csv and provenance.json in ``out_dir``."""
    from .backdoor import FinetuneConfig, finetune

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    original, orig_meta = io.load_model(clean_model_path, device)
    train = datasets.load_split(data_dir / "train.npz")
    test = datasets.load_split(data_dir / "test.npz")
    cfg = FinetuneConfig(attack=attack, explainer=explainer, loss=loss, lam=hyper["lambda"],
                         lr=hyper["lr"], **finetune_cfg,
                         relevancecam_weighting=(xai or {}).get("relevancecam_weighting", "spatial"))
    io.seed_everything(seed)
    info = finetune(original, train.x, train.y, test.x, test.y, cfg, out_dir, seed, device,
                    meta={**(meta or {}), "dataset": orig_meta.get("dataset"),
                          "clean_model": str(clean_model_path),
                          "clean_fingerprint": orig_meta.get("fingerprint")})
    if provenance is not None:
        io.write_json(out_dir / "provenance.json", provenance)
    return info


def explainer_kwargs(explainer: str, xai: dict | None) -> dict:
    """Explainer settings from the config's ``xai`` section."""
    if explainer == "relevancecam":
        return {"weighting": (xai or {}).get("relevancecam_weighting", "spatial")}
    return {}


def explain_to_cache(model_path, data_dir, out_paths: dict, explainer: str, defense: str,
                     evaluation: dict, trigger: dict, device="cpu", meta: dict | None = None,
                     xai: dict | None = None) -> None:
    """Explain one model under one defense on clean and triggered evaluation images and write
    one Parquet file per input variant (``out_paths``: {"clean": path, "triggered": path})."""
    from .cache import write_explanations
    from .explain_cache import explain_dataset

    model, model_meta = io.load_model(model_path, device)
    test = datasets.load_split(Path(data_dir) / "test.npz")
    sets = explain_dataset(model, test.x, test.y, explainer, defense,
                           batch_size=evaluation["batch_size"], n_samples=evaluation["n_samples"],
                           seed=evaluation["seed"], composition=evaluation["composition"],
                           trigger=trigger, device=device,
                           explainer_kwargs=explainer_kwargs(explainer, xai),
                           meta={**(meta or {}), "model_path": str(model_path),
                                 "model_fingerprint": model_meta.get("fingerprint")})
    for variant, path in out_paths.items():
        write_explanations(path, sets[variant])


def evaluate_backdoor(original_paths: dict, attacked_paths: dict, out_summary, out_samples,
                      attack: str, loss: str, target_label: int, evaluation: dict,
                      meta: dict | None = None) -> None:
    """Compare an attacked model's cached explanations (per defense) with the original's.

    ``original_paths``: {variant: parquet}; ``attacked_paths``: {defense: {variant: parquet}}.
    Writes the per-sample comparison (Parquet) and its summary (JSON).
    """
    from .cache import read_explanations
    from .cfn_eval import compare, summarize

    original = {v: read_explanations(p) for v, p in original_paths.items()}
    attacked = {d: {v: read_explanations(p) for v, p in vs.items()}
                for d, vs in attacked_paths.items()}
    per_sample = compare(original, attacked, attack, loss, target_label,
                         evaluation["error_normalization"], evaluation["triggered_reference"])
    for k, v in (meta or {}).items():
        per_sample[k] = v
    with io.atomic_path(out_samples) as tmp:
        per_sample.to_parquet(tmp, index=False)
    summary = summarize(per_sample)
    io.write_json(out_summary, {**(meta or {}), "evaluation": evaluation,
                                "summary": summary.to_dict(orient="records")})
