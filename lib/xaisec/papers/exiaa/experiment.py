"""EXIAA experiments in the workflow: one grid per (model, explainer, attack-image selection),
and the paper's tables and figures read from those grids.

Selections (which pool images are injected):

* ``runnerup``: the paper's attack, the ``attack_ranks`` (3) most confident pool images of each
  image's running-up class (Tables 1, B.1-B.3, Figures 2-4);
* ``others``: the same ranks of every other class except the prediction and the running-up class
  (Figure 5: "the average of using all the other classes");
* ``top`` / ``low``: the running-up class's images at ``figA1.top_ranks`` (the top 5) and at
  ``figA1.low_ranks`` (ranks 95-100) (Appendix A, Figure A.1).

The evaluated images are a seeded random draw from the test split; the pool the attack images
come from is the rest of the test split (``pool: test``, never an evaluated image) or the
training split (``pool: train``). Figures 5 and A.1 use the first ``n_images`` of the same draw.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from xaisec import io
from xaisec.published import published as read_published

from xaisec.data import datasets as datasets
from xaisec.evaluate import eval_indices
from xaisec.tensors import nhwc_to_tensor, predict, to_float

EXPLAINERS = ("saliency", "ig", "deepliftshap")
LABELS = {"saliency": "Saliency maps", "ig": "Integrated Gradients", "deepliftshap": "DeepLIFT SHAP"}
SELECTIONS = ("runnerup", "others", "top", "low")
#: paper table -> (explainer, top-k columns or None for all)
TABLES = {
    "1": ("deepliftshap", (0.01, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8)),
    "B1": ("saliency", None),
    "B2": ("ig", None),
    "B3": ("deepliftshap", None),
}
METRICS = {"explanation_change": "explanation change (%)", "ssim": "SSIM",
           "confidence_change": "confidence change (pp)"}
FIGURE_METRIC = {2: "explanation_change", 3: "ssim", 4: "confidence_change"}


def build_explainer(name: str, model: torch.nn.Module, settings: dict):
    """Saliency, IntegratedGradients or DeepLiftShap (Captum) with the config's settings
    (:func:`xaisec.explainers.explainer_kwargs` of the ``exiaa`` section)."""
    from xaisec.explainers import explainer_from_settings

    if name not in EXPLAINERS:
        raise ValueError(f"unknown EXIAA explainer {name!r}; known: {', '.join(EXPLAINERS)}")
    return explainer_from_settings(name, model, settings)


def selection_images(settings: dict, selection: str) -> int:
    """How many evaluated images a selection uses (the first of the same seeded draw)."""
    if selection == "runnerup":
        return settings["n_images"]
    n = settings["fig5" if selection == "others" else "figA1"]["n_images"]
    return min(n, settings["n_images"])


def selection_ranks(settings: dict, selection: str) -> list[int]:
    if selection in ("runnerup", "others"):
        return list(settings["attack_ranks"])
    return list(settings["figA1"]["top_ranks" if selection == "top" else "low_ranks"])


def run(model_path, data_dir, out_path, explainer: str, selection: str, settings: dict,
        device="cpu", meta: dict | None = None, progress: bool = True) -> dict:
    """One EXIAA grid: every evaluated image x attack image x alpha x top-k, attack and noise
    baseline. Writes one Parquet row per grid point; returns a small summary."""
    from xaisec.attacks.exiaa import class_rankings, other_classes, run_grid, running_up, select_attack_images

    if selection not in SELECTIONS:
        raise ValueError(f"unknown EXIAA selection {selection!r}; known: {', '.join(SELECTIONS)}")
    device = torch.device(device)
    model, model_meta = io.load_model(model_path, device)
    model.eval()
    data_dir = Path(data_dir)
    test = datasets.load_split(data_dir / "test.npz")
    draw = eval_indices(len(test.x), settings["n_images"], settings["sample_seed"])
    idx = draw[:selection_images(settings, selection)]
    if settings["pool"] == "test":
        keep = np.ones(len(test.x), bool)
        keep[draw] = False
        pool_idx = np.flatnonzero(keep)
        pool = test
    else:
        pool = datasets.load_split(data_dir / "train.npz")
        pool_idx = np.arange(len(pool.x))
    pool_x = to_float(nhwc_to_tensor(pool.x[pool_idx]))
    pool_y = torch.as_tensor(pool.y[pool_idx], dtype=torch.long)
    num_classes = int(datasets.load_manifest(data_dir)["num_classes"])
    probs = torch.softmax(predict(model, pool_x, 500, device), 1)
    rankings = class_rankings(probs, pool_y, num_classes)

    x = to_float(nhwc_to_tensor(test.x[idx])).to(device)
    pred, ru = running_up(predict(model, x, 500, device))
    ranks = selection_ranks(settings, selection)
    if selection == "others":
        classes = other_classes(pred, ru, num_classes)  # (N, J-2)
        attack_idx = select_attack_images(classes, rankings, ranks).reshape(len(idx), -1)
    else:
        attack_idx = select_attack_images(ru, rankings, ranks)
    expl = build_explainer(explainer, model, settings)
    df = run_grid(model, expl, x, pool_x, attack_idx, settings["alphas"], settings["topks"],
                  baseline=settings["baseline"], explain_target=settings["explain_target"],
                  batch_size=settings["batch_size"], images_per_chunk=settings["images_per_chunk"],
                  seed=settings["noise_seed"], progress=progress, pool_labels=pool_y)
    df.insert(0, "sample", idx[df["image"].to_numpy()])
    df["attack_sample"] = pool_idx[df["attack_index"].to_numpy()]
    if selection in ("top", "low"):
        df["rank"] = np.asarray(ranks)[df["rank"].to_numpy()]
    elif selection == "others":
        df["rank"] = np.asarray(ranks * (num_classes - 2))[df["rank"].to_numpy()]
    df["selection"] = selection
    df["explainer"] = explainer
    for k, v in (meta or {}).items():
        df[k] = v
    io.write_parquet(df, out_path)
    s = df.groupby("method")[list(METRICS)].mean()
    return {"n_images": int(len(idx)), "n_rows": int(len(df)),
            "model_fingerprint": model_meta.get("fingerprint"), "mean": s.to_dict()}


# ---------------------------------------------------------------- tables and figures

def _read(paths) -> pd.DataFrame:
    return pd.concat([io.read_parquet(p) for p in paths], ignore_index=True)


def published() -> pd.DataFrame:
    """The paper's published values (``resources/exiaa_published.csv``)."""
    return read_published("exiaa_published")


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over images and attack images per (run, explainer, alpha, top-k, method)."""
    keys = ["dataset", "model", "seed", "explainer", "selection", "alpha", "topk", "method"]
    keys = [k for k in keys if k in df.columns]
    g = df.groupby(keys, sort=True)
    out = g[list(METRICS)].agg(["mean", "std"])
    out.columns = [f"{m}_{s}" for m, s in out.columns]
    out["n"] = g.size()
    return out.reset_index()


def _cell(attack: pd.Series, base: pd.Series) -> str:
    return (f"**{attack['explanation_change_mean']:.1f}** {attack['confidence_change_mean']:.2f}↓"
            f" / {base['explanation_change_mean']:.1f} {base['confidence_change_mean']:.2f}↓")


def write_table(paths, table: str, csv_path, md_path) -> pd.DataFrame:
    """The paper's Table 1 (DeepLIFT SHAP, 7 top-k) or Table B.1-B.3 (one explainer, every
    top-k): explanation change (%) and the confidence change of the predicted class (pp), ours
    (bold) / the noise baseline, per run and alpha; the paper's values (ResNet-18 and ViT-B16
    on ImageNet) in their own rows where the paper gives them."""
    explainer, topks = TABLES[table]
    s = summarize(_read(paths))
    s = s[(s["explainer"] == explainer) & (s["selection"] == "runnerup")]
    if topks is not None:
        s = s[np.isclose(s["topk"].to_numpy()[:, None], np.asarray(topks)[None]).any(1)]
    with io.atomic_path(csv_path) as tmp:
        s.to_csv(tmp, index=False)
    ks = sorted(s["topk"].unique())
    lines = [f"# EXIAA paper, Table {table if table == '1' else 'B.' + table[1:]} (reproduced): "
             f"{LABELS[explainer]}\n",
             "Cells: **ours** explanation change (%) and confidence change (pp)↓ / the Gaussian-"
             "noise baseline's; mean over images and attack images.\n"]
    header = "| run | α \\ top-k | " + " | ".join(f"{k:g}" for k in ks) + " |"
    lines += [header, "|" + "---|" * (len(ks) + 2)]
    for (ds, mo, se), g in s.groupby(["dataset", "model", "seed"]):
        for a, ga in g.groupby("alpha"):
            cells = []
            for k in ks:
                gk = ga[np.isclose(ga["topk"], k)].set_index("method")
                cells.append(_cell(gk.loc["attack"], gk.loc["baseline"])
                             if {"attack", "baseline"} <= set(gk.index) else "")
            lines.append(f"| {ds}/{mo}/seed{se} | {a:g} | " + " | ".join(cells) + " |")
    pub = published()
    pub = pub[pub["explainer"] == explainer]
    if not pub.empty:
        pks = sorted(pub["topk"].unique())
        lines += ["", f"Paper ({LABELS[explainer]}, ImageNet, Table 1; same cell layout):", "",
                  "| model | α \\ top-k | " + " | ".join(f"{k:g}" for k in pks) + " |",
                  "|" + "---|" * (len(pks) + 2)]
        for (mo, a), g in pub.groupby(["model", "alpha"], sort=False):
            cells = []
            for k in pks:
                gk = g[np.isclose(g["topk"], k)].set_index("method")
                cells.append(f"**{gk.loc['attack', 'explanation_change']:.1f}** "
                             f"{gk.loc['attack', 'confidence_change']:.2f}↓ / "
                             f"{gk.loc['baseline', 'explanation_change']:.1f} "
                             f"{gk.loc['baseline', 'confidence_change']:.2f}↓")
            lines.append(f"| {mo} | {a:g} | " + " | ".join(cells) + " |")
    io.write_text(md_path, "\n".join(lines) + "\n")
    return s


def _curves(ax, s: pd.DataFrame, metric: str, solid: dict, dotted: dict, palette) -> None:
    for i, a in enumerate(sorted(s["alpha"].unique())):
        for style, sel in (("-", solid), ("--", dotted)):
            d = s[(s["alpha"] == a)]
            for k, v in sel.items():
                d = d[d[k] == v]
            if d.empty:
                continue
            d = d.sort_values("topk")
            m, sd = d[f"{metric}_mean"].to_numpy(), d[f"{metric}_std"].fillna(0).to_numpy()
            ax.plot(d["topk"], m, style, color=palette[i], lw=1.2,
                    label=f"α={a:g}" if style == "-" else None)
            if style == "-":
                ax.fill_between(d["topk"], m - sd, m + sd, color=palette[i], alpha=0.12, lw=0)


def figure(paths, number, paths_out, solid_label: str = "", dotted_label: str = "") -> None:
    """Figures 2-4 (metric over top-k per alpha, ours solid, baseline dotted; a panel per run and
    explainer), Figure 5 (running-up class solid vs every other class dotted) and Figure A.1
    (top-ranked attack images solid vs ranks 95-100 dotted)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from xaisec.report import save_figure

    raw = _read(paths)
    if number == 5:  # compare on the same images: those of the `others` grid
        others = raw[raw["selection"] == "others"]
        same = raw.set_index(["dataset", "model", "seed", "explainer", "sample"]).index.isin(
            others.set_index(["dataset", "model", "seed", "explainer", "sample"]).index)
        raw = raw[same]
    s = summarize(raw)
    runs = sorted({(r.dataset, r.model, r.seed) for r in s.itertuples()})
    expls = [e for e in EXPLAINERS if e in set(s["explainer"])]
    metric = FIGURE_METRIC.get(number, "explanation_change")
    if number in (2, 3, 4):
        s = s[s["selection"] == "runnerup"]
        solid, dotted = {"method": "attack"}, {"method": "baseline"}
        what, how = METRICS[metric], "ours (solid) vs the Gaussian-noise baseline (dotted)"
    elif number == 5:
        s = s[s["method"] == "attack"]
        solid, dotted = {"selection": "runnerup"}, {"selection": "others"}
        what, how = METRICS[metric], "running-up class (solid) vs all other classes (dotted)"
    else:
        s = s[s["method"] == "attack"]
        solid, dotted = {"selection": "top"}, {"selection": "low"}
        what, how = METRICS[metric], "top-ranked attack images (solid) vs ranks 95-100 (dotted)"
    palette = sns.color_palette("viridis", n_colors=max(1, s["alpha"].nunique()))
    fig, axes = plt.subplots(len(runs), len(expls), figsize=(4.2 * len(expls), 3.2 * len(runs)),
                             squeeze=False, sharex=True)
    for i, (ds, mo, se) in enumerate(runs):
        for j, e in enumerate(expls):
            ax = axes[i, j]
            d = s[(s["dataset"] == ds) & (s["model"] == mo) & (s["seed"] == se)
                  & (s["explainer"] == e)]
            _curves(ax, d, metric, solid, dotted, palette)
            ax.set_title(f"{ds}/{mo}: {LABELS[e]}", fontsize=9)
            ax.set_xlabel("top-k")
            ax.set_ylabel(what)
            ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    name = "A.1" if number == "A1" else str(number)
    fig.suptitle(f"EXIAA paper, Figure {name} (reproduced): {what}, {how}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, paths_out)
