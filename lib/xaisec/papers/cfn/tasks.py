"""CFN paper: one function per workflow step (backdoor fine-tuning, explanation caches, their
evaluation, the batch-size ablation, the example figures); ``scripts/<rule>.py`` call one."""
from __future__ import annotations

from pathlib import Path

from xaisec import io
from xaisec.data import datasets
from xaisec.papers.cfn.targets import SCENARIOS


def finetune_backdoor(clean_model_path, data_dir, out_dir, attack: str, explainer: str,
                      loss: str, finetune_cfg: dict, hyper: dict, seed: int, device="cpu",
                      provenance: dict | None = None, meta: dict | None = None,
                      xai: dict | None = None, scenario: str | None = None) -> dict:
    """Fine-tune one clean model into an explanation-aware backdoor (one attack x explainer x
    loss); writes model.pt, model.json, metrics.csv and provenance.json in ``out_dir``.
    ``scenario``: None/"c1" (all weights, BatchNorm), "c3" (core weights only) or "c5" (CFN in
    place of BatchNorm while fine-tuning), the CFN paper's Table 6."""
    finetune_cfg = {**finetune_cfg, **SCENARIOS[scenario or "c1"]}
    from xaisec.attacks.backdoor import FinetuneConfig, finetune

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


def batchsize_ablation(original_path, attacked_path, data_dir, out_csv, settings: dict,
                       evaluation: dict, trigger: dict, target_label: int, xai: dict | None,
                       device="cpu") -> None:
    """CFN Figures 8-9: the attacked model (and the original) evaluated at every batch size."""
    from xaisec.papers.cfn.ablation import batch_size_ablation

    original, _ = io.load_model(original_path, device)
    attacked, _ = io.load_model(attacked_path, device)
    test = datasets.load_split(Path(data_dir) / "test.npz")
    df = batch_size_ablation(original, attacked, test.x, test.y,
                             batch_sizes=tuple(settings["batch_sizes"]),
                             n_samples=settings["n_samples"], seed=evaluation["seed"],
                             explainer=settings["explainer"], loss=settings["loss"],
                             target_label=target_label, trigger=trigger, device=device,
                             explainer_kwargs=explainer_kwargs(settings["explainer"], xai),
                             attack=settings["attack"])
    with io.atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False)


def example_figure(number: int, spec: dict, data_dir, original_path, attacked_paths: dict,
                   settings: dict, trigger: dict, xai: dict | None, paths, device="cpu") -> None:
    """CFN Figures 1, 2 and 19-24: example grids (one block per attack in ``attacked_paths``);
    Figure 4 (``spec["kind"] == "activations"``): the final layer's activation, BN vs CFN."""
    import numpy as np

    from xaisec.papers.cfn.examples import activation_grid, example_panels, stack_examples

    test = datasets.load_split(Path(data_dir) / "test.npz")
    names = datasets.load_manifest(data_dir)["class_names"]
    rng = np.random.default_rng(settings["seed"])
    idx = rng.choice(len(test.x), size=settings["n_images"] + settings["context"], replace=False)
    shown, ctx = idx[:settings["n_images"]], idx[settings["n_images"]:]
    original, _ = io.load_model(original_path, device)
    kw = explainer_kwargs(spec["explainer"], xai)
    if spec.get("kind") == "activations":
        (attack, path), = attacked_paths.items()
        attacked, _ = io.load_model(path, device)
        activation_grid(original, attacked, test.x[shown], test.y[shown], names,
                        layer=spec.get("layer"), trigger=trigger,
                        context_x=test.x[ctx] if len(ctx) else None, paths=paths,
                        title=spec["title"], device=device)
        return
    blocks = []
    for attack, path in attacked_paths.items():
        attacked, _ = io.load_model(path, device)
        blocks.append(example_panels(original, attacked, test.x[shown], test.y[shown], names,
                                     spec["explainer"], trigger=trigger, explainer_kwargs=kw,
                                     context_x=test.x[ctx] if len(ctx) else None, device=device))
    labels = [a.upper() for a in attacked_paths] if len(attacked_paths) > 1 else None
    stack_examples(blocks, names, paths, labels=labels, title=spec["title"])


def explainer_kwargs(explainer: str, xai: dict | None) -> dict:
    """Explainer settings from the config's ``xai`` section
    (:func:`xaisec.explainers.explainer_kwargs`)."""
    from xaisec.explainers import explainer_kwargs as from_settings

    return from_settings(explainer, xai)


def explain_to_cache(model_path, data_dir, out_paths: dict, explainer: str, defense: str,
                     evaluation: dict, trigger: dict, device="cpu", meta: dict | None = None,
                     xai: dict | None = None) -> None:
    """Explain one model under one defense on clean and triggered evaluation images and write
    one Parquet file per input variant (``out_paths``: {"clean": path, "triggered": path})."""
    from xaisec.cache import write_explanations
    from xaisec.papers.cfn.caches import explain_dataset

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
    from xaisec.cache import read_explanations
    from xaisec.papers.cfn.evaluation import compare, summarize

    original = {v: read_explanations(p) for v, p in original_paths.items()}
    attacked = {d: {v: read_explanations(p) for v, p in vs.items()}
                for d, vs in attacked_paths.items()}
    per_sample = compare(original, attacked, attack, loss, target_label,
                         evaluation["error_normalization"], evaluation["triggered_reference"])
    for k, v in (meta or {}).items():
        per_sample[k] = v
    io.write_parquet(per_sample, out_samples)
    summary = summarize(per_sample)
    io.write_json(out_summary, {**(meta or {}), "evaluation": evaluation,
                                "summary": summary.to_dict(orient="records")})
