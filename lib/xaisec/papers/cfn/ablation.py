"""Batch-size ablation of the CFN defense (CFN paper, Section 4, Figures 8 and 9).

CFN normalises with the statistics of the current batch, so the defended model's predictions
and explanations depend on the evaluation batch size. The paper measures this "on an attacked
(RH) model with Relevance-CAM explainer with varying batch sizes": the explanation MSE
(mean +- sd) and the ASR (Figure 8) and the accuracy of the attacked model with and without
the defense and of the original model (Figure 9).

Every batch size sees the same evaluation images (drawn once, seeded, by
:func:`xaisec.papers.cfn.caches.explain_dataset`), batched all-clean or all-triggered
(``separate``, the CFN authors' evaluation); only the grouping into batches changes. The
explanation error of a mode is computed against the original model's map of the same
(triggered or clean) input, each map channel-max aggregated and divided by its own maximum
(``max``, as :func:`xaisec.papers.cfn.evaluation.compare` reports it).
"""
from __future__ import annotations

import pandas as pd
import torch
from tqdm.auto import tqdm

from xaisec.papers.cfn.evaluation import compare, summarize
from xaisec.papers.cfn.caches import explain_dataset

#: mode label -> (model, defense); "original" is the unattacked model with its own BatchNorm
MODES = {
    "attacked": ("attacked", "none"),
    "attacked + CFN": ("attacked", "cfn"),
    "attacked + batchstat": ("attacked", "batchstat"),
    "original": ("original", "none"),
}
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)
COLUMNS = ["batch_size", "mode", "model", "defense", "n", "accuracy", "triggered_accuracy",
           "asr", "error_mean", "error_sd", "src_median", "clean_error_mean", "clean_error_sd",
           "clean_src_median"]


def batch_size_ablation(original: torch.nn.Module, attacked: torch.nn.Module, x_uint8, y,
                        batch_sizes=BATCH_SIZES, n_samples: int = 1024, seed: int = 0,
                        explainer: str = "relevancecam", loss: str = "mse",
                        target_label: int = 1, trigger: dict | None = None, device="cpu",
                        explainer_kwargs: dict | None = None, progress: bool = True,
                        attack: str = "rh", modes=tuple(MODES)) -> pd.DataFrame:
    """Accuracy, ASR and explanation error of each mode at each evaluation batch size.

    ``x_uint8`` (N, H, W, 3) test images, ``y`` labels; ``n_samples`` of them are drawn (seed
    ``seed``) and used at every batch size, so ``n_samples`` must be a multiple of every batch
    size (a ValueError says which is not). ``modes``: labels of :data:`MODES`.

    Returns one row per (batch size, mode) with the columns of :data:`COLUMNS`:
    ``accuracy`` on clean inputs, ``triggered_accuracy`` and ``asr`` (triggered inputs whose
    label is not ``target_label`` predicted as ``target_label``; NaN for ``attack="sf"``) on
    triggered inputs, ``error_mean``/``error_sd``/``src_median`` of the triggered maps against
    the original model's maps of the same triggered inputs (``loss``: mse or dssim, ``max``
    normalisation) and the same for clean inputs (``clean_*``). The "original" rows compare
    the original model with itself (error 0) and give its accuracy. BatchNorm in eval mode
    ("attacked", "original") does not depend on the batch size, so those maps are computed once
    (at the largest batch size); the batch-statistics modes are explained at every batch size.
    """
    batch_sizes = [int(b) for b in batch_sizes]
    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"batch sizes must be positive integers, got {batch_sizes}")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown modes {unknown}; known: {', '.join(MODES)}")
    n = int(n_samples)
    if n > len(x_uint8):
        raise ValueError(f"n_samples={n} exceeds the {len(x_uint8)} images given")
    bad = [b for b in batch_sizes if n % b]
    if bad:
        raise ValueError(f"n_samples={n} is not a multiple of batch size(s) {bad}: every batch "
                         f"size must see the same images in whole batches")
    models = {"original": original, "attacked": attacked}
    kw = {"explainer": explainer, "n_samples": n, "seed": seed, "composition": "separate",
          "trigger": trigger, "device": device, "progress": False,
          "explainer_kwargs": explainer_kwargs}
    rows = []
    fixed = {m for m in modes if MODES[m][1] == "none"}  # own BatchNorm, eval mode
    bar = tqdm(total=1 + len(fixed - {"original"}) + len(batch_sizes) * len(set(modes) - fixed),
               disable=not progress, desc="batch-size ablation")
    # the maps that do not depend on the batch (the reference: the original model) are
    # computed once, at the largest batch size, and reused at every batch size
    big = max(batch_sizes)
    ref = explain_dataset(original, x_uint8, y, defense="none", batch_size=big, **kw)
    bar.update()
    once = {m: ref if m == "original" else explain_dataset(
        models[MODES[m][0]], x_uint8, y, defense="none", batch_size=big, **kw) for m in fixed}
    bar.update(len(fixed - {"original"}))
    for b in batch_sizes:
        sets = {}
        for mode in modes:
            which, defense = MODES[mode]
            if mode in once:
                sets[mode] = once[mode]
                continue
            sets[mode] = explain_dataset(models[which], x_uint8, y, defense=defense,
                                         batch_size=b, **kw)
            bar.update()
        per_sample = compare(ref, sets, attack=attack, loss=loss, target_label=target_label,
                             error_normalization="max", triggered_reference="same_input")
        s = summarize(per_sample).set_index(["defense", "variant"])
        for mode in modes:
            t, c = s.loc[(mode, "triggered")], s.loc[(mode, "clean")]
            which, defense = MODES[mode]
            rows.append({"batch_size": b, "mode": mode, "model": which, "defense": defense,
                         "n": int(t["n"]), "accuracy": float(c["acc"]),
                         "triggered_accuracy": float(t["acc"]), "asr": float(t["asr"]),
                         "error_mean": float(t["error_mean"]), "error_sd": float(t["error_sd"]),
                         "src_median": float(t["src_median"]),
                         "clean_error_mean": float(c["error_mean"]),
                         "clean_error_sd": float(c["error_sd"]),
                         "clean_src_median": float(c["src_median"])})
    bar.close()
    return pd.DataFrame(rows, columns=COLUMNS)
