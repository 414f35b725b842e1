"""Evaluation of explanation-aware backdoors and the CFN defense from cached explanations.

Per attacked model and defense, on clean and triggered inputs (CFN paper, Tables 1-4 and
Figures 5-6; reporting as in the authors' 2023 evaluation code, docs/settings.md):

* explanation error: MSE (or DSSIM, matching the attack's loss) between the manipulated
  model's map and the original model's map, both channel-max aggregated and divided by their
  own maximum (``max``; the training loss's z-score is the ``zscore`` option). "Triggered"
  compares on the same triggered input (``same_input``; ``clean_input`` compares with the
  original model on the clean image, the attack's own objective);
* Spearman rank correlation (SRC) of the two maps per sample, with its p-value;
* accuracy on clean and triggered inputs; ASR: share of triggered inputs whose label is not
  the target class that are predicted as the target class (N/A for SF).

The original model is always evaluated with its own BatchNorm in eval mode.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from xaisec.metrics.maps import explanation_loss, max_normalize, zscore_channelmax
from xaisec.cache import ExplanationSet
from xaisec.metrics.correlation import spearman_rows

MODE_LABELS = {"none": "attack", "cfn": "defense (cfn)", "batchstat": "defense (batchstat)"}


def _normalize(maps: np.ndarray, how: str) -> torch.Tensor:
    t = torch.from_numpy(np.array(maps, dtype=np.float32))  # a writable copy of the cache's view
    if how == "max":
        return max_normalize(t)
    if how == "zscore":
        return zscore_channelmax(t)
    raise ValueError(f"unknown error normalisation {how!r}; known: max, zscore")


def _per_sample_error(loss: str, a: torch.Tensor, b: torch.Tensor, batch: int = 1000) -> np.ndarray:
    fn = explanation_loss(loss)
    return torch.cat([fn(a[i:i + batch], b[i:i + batch]) for i in range(0, len(a), batch)]).numpy()


def compare(original: dict[str, ExplanationSet], attacked: dict[str, dict[str, ExplanationSet]],
            attack: str, loss: str, target_label: int = 1, error_normalization: str = "max",
            triggered_reference: str = "same_input") -> pd.DataFrame:
    """Per-sample comparison of every (defense, variant) of the attacked model with the
    original model. Returns one row per (defense, variant, sample)."""
    frames = []
    ref_norm = {v: _normalize(es.maps, error_normalization) for v, es in original.items()}
    ref_agg = {v: es.maps.max(axis=1) for v, es in original.items()}
    for defense, sets in attacked.items():
        for variant, es in sets.items():
            ref_v = variant if (variant == "clean" or triggered_reference == "same_input") else "clean"
            ref = original[ref_v]
            if not np.array_equal(es.sample, ref.sample):
                raise ValueError(f"{defense}/{variant}: the attacked and original caches hold "
                                 f"different samples; rebuild them with the same evaluation set")
            err = _per_sample_error(loss, _normalize(es.maps, error_normalization), ref_norm[ref_v])
            rho, p = spearman_rows(es.maps.max(axis=1), ref_agg[ref_v])
            asr_eligible = (variant == "triggered") & (attack != "sf") & (es.label != target_label)
            frames.append(pd.DataFrame({
                "defense": defense, "variant": variant, "sample": es.sample, "label": es.label,
                "pred": es.pred, "confidence": es.confidence, "correct": es.pred == es.label,
                "asr_eligible": asr_eligible,
                "hit_target": asr_eligible & (es.pred == target_label),
                "error": err, "src": rho, "src_p": p,
            }))
    return pd.concat(frames, ignore_index=True)


def summarize(per_sample: pd.DataFrame) -> pd.DataFrame:
    """mean +- sd of the error, SRC median, accuracy and ASR per (defense, variant) and any
    grouping columns present (dataset, attack, explainer, loss, model)."""
    keys = [c for c in ("dataset", "model", "attack", "explainer", "loss", "defense", "variant")
            if c in per_sample.columns]
    g = per_sample.groupby(keys, sort=False)
    out = g.agg(n=("error", "size"), error_mean=("error", "mean"), error_sd=("error", "std"),
                src_median=("src", "median"), src_mean=("src", "mean"),
                src_p_median=("src_p", "median"), acc=("correct", "mean"),
                asr_n=("asr_eligible", "sum"), asr_hits=("hit_target", "sum")).reset_index()
    out["asr"] = np.where(out["asr_n"] > 0, out["asr_hits"] / out["asr_n"].clip(lower=1), np.nan)
    return out.drop(columns=["asr_hits"])


# ---------------------------------------------------------------- the paper's tables

XAI_LABEL = {"grad": "Grad", "gradcam": "G-C", "relevancecam": "R-C"}


def _pm(m, s):
    return "" if pd.isna(m) else f"{m:.2f} ± {s:.2f}"


def _one_cell(rows: pd.DataFrame, cell: str) -> None:
    """A table cell is one model on one data set: two of either is an error, never a pick."""
    for col in ("model", "dataset"):
        if col in rows and rows[col].nunique() > 1:
            raise ValueError(f"cell {cell} holds the {col}s {sorted(rows[col].unique())}: a CFN "
                             f"table cell is one {col} (the workflow selects the model named "
                             "by backdoor.tables.model)")
    if "variant" in rows and rows["variant"].duplicated().any():
        raise ValueError(f"cell {cell} holds more than one row per input variant")


def paper_table(summary: pd.DataFrame, by_attack: bool) -> pd.DataFrame:
    """Lay a summary out like the CFN paper's Tables 1-4: rows mode x XAI x loss (or attack),
    columns triggered mu +- sd, Acc, ASR, clean mu +- sd, Acc."""
    rows = []
    mode_order = list(MODE_LABELS)
    s = summary.copy()
    s["_mode"] = s["defense"].map(mode_order.index)
    s["_xai"] = s["explainer"].map(list(XAI_LABEL).index)
    s["_loss"] = s["loss"].map(["mse", "dssim"].index)
    s["_attack"] = s["attack"].map(["sf", "rh", "fd"].index)
    order = ["_mode", "_attack", "_xai"] if by_attack else ["_mode", "_loss", "_xai"]
    for (d, a, e, lo), g in s.groupby(["defense", "attack", "explainer", "loss"], sort=False):
        _one_cell(g, f"{d}/{a}/{e}/{lo}")
        t = g[g["variant"] == "triggered"].iloc[0]
        c = g[g["variant"] == "clean"].iloc[0]
        rows.append({
            "_k": tuple(t[k] for k in order),
            "mode": MODE_LABELS[d], "xai": XAI_LABEL[e],
            ("attack" if by_attack else "loss"): (a.upper() if by_attack else lo.upper()),
            "triggered": _pm(t["error_mean"], t["error_sd"]),
            "triggered_acc": round(100 * t["acc"], 1),
            "asr": "N/A" if a == "sf" else round(t["asr"], 2),
            "clean": _pm(c["error_mean"], c["error_sd"]),
            "clean_acc": round(100 * c["acc"], 1),
            "src_median_triggered": round(t["src_median"], 3),
            "n": int(t["n"]),
        })
    df = pd.DataFrame(rows).sort_values("_k", kind="stable").drop(columns="_k")
    return df.reset_index(drop=True)


def comparison(summary: pd.DataFrame, published: pd.DataFrame, dataset: str, table: str
               ) -> pd.DataFrame:
    """Every reproduced cell next to the paper's published value (cfn_published.csv)."""
    pub = published[(published["table"] == table) & (published["dataset"] == dataset)]
    col_map = {"triggered_err": ("triggered", "error_mean"), "clean_err": ("clean", "error_mean"),
               "triggered_acc": ("triggered", "acc"), "clean_acc": ("clean", "acc"),
               "asr": ("triggered", "asr")}
    rows = []
    for r in pub.itertuples():
        variant, col = col_map[r.column]
        row = {"table": table, "attack": r.attack, "mode": r.mode, "xai": r.xai, "loss": r.loss,
               "column": r.column, "paper": r.value, "paper_sd": r.sd}
        # the paper's "defense" rows: CFN as its text defines it, and the authors' code variant
        for name, defense in ((("ours", "none"),) if r.mode == "attack"
                              else (("ours", "cfn"), ("ours_batchstat", "batchstat"))):
            sel = summary[(summary["attack"] == r.attack) & (summary["explainer"] == r.xai)
                          & (summary["loss"] == r.loss) & (summary["defense"] == defense)
                          & (summary["variant"] == variant)]
            _one_cell(sel, f"{table} {r.attack}/{r.mode}/{r.xai}/{r.loss}")
            row[name] = float(sel[col].iloc[0]) if len(sel) else np.nan
            if col == "error_mean":
                row[name + "_sd"] = float(sel["error_sd"].iloc[0]) if len(sel) else np.nan
        rows.append(row)
    out = pd.DataFrame(rows)
    out["diff"] = out["ours"] - out["paper"]
    return out
