"""AdvEdge paper: tables and figures, read from the per-run scores and the caches only
(docs/settings.md#advedge).

* Table I (:func:`write_time_table`): seconds per adversarial input;
* Tables VII and VIII (:func:`write_rate_table`): attack success rate and misclassification
  confidence (over successes), with the numbers Section V-B quotes;
* ``advedge_comparison`` (:func:`write_comparison`): every metric per attack beside the plain
  targeted PGD reference, with a one-sided Wilcoxon signed-rank test (scipy) of whether the
  interpretation term lowers the map L1 (paired by sample);
* Figures 3-5 / 10-15 (:func:`box_figure`): L1, IoU or noise rate as box plots;
* Figures 1, 2, 9 (:func:`example_figure`): benign and adversarial images with their maps.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from xaisec import io
from xaisec.papers.advedge.targets import BOX_FIGURES, LABELS, METRIC_LABELS, REFERENCE
from xaisec.published import published

PAPER_FAMILIES = ("resnet", "densenet", "inception", "vgg")


def paper_family(arch: str) -> str | None:
    """The paper's model family (Table I rows) of an architecture name."""
    a = arch.lower()
    return next((f for f in PAPER_FAMILIES if a.startswith(f)), None)


def load_scores(paths, runs: list[dict] | None = None) -> pd.DataFrame:
    frames = [io.read_parquet(p) for p in paths]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if runs:
        arch = {(r["dataset"], r["model"]): r.get("arch", r["model"]) for r in runs}
        paper = {r["dataset"]: r.get("paper_dataset", r["dataset"]) for r in runs}
        df["arch"] = [arch.get((d, m), m) for d, m in zip(df["dataset"], df["model"])]
        df["paper_dataset"] = df["dataset"].map(paper).fillna(df["dataset"])
    return df


def _per_attack(df: pd.DataFrame) -> pd.DataFrame:
    """One row per attacked input (scores hold one row per attack x scored interpreter)."""
    return df.drop_duplicates(["dataset", "model", "seed", "framework", "attacked", "variant",
                               "sample"])


def _settings_note(df: pd.DataFrame) -> str:
    parts = []
    for col in ("edge_stages", "smoothing", "schedules"):
        vals = sorted(set(df[col].astype(str)) - {"n/a"}) if col in df else []
        if vals:
            parts.append(f"{col}: {', '.join(vals)}")
    return "; ".join(parts)


def _pub(table: str) -> pd.DataFrame:
    p = published("advedge_published")
    return p[p["table"] == table]


def _md(df: pd.DataFrame, title: str, notes: list[str], md_path) -> None:
    body = df.to_markdown(index=False, floatfmt=".3f") if not df.empty else "(no rows)"
    io.write_text(md_path, f"# {title}\n\n{body}\n\n" + "\n".join(f"- {n}" for n in notes)
                  + "\n")


def write_time_table(df: pd.DataFrame, csv_path, md_path) -> pd.DataFrame:
    """Table I: mean seconds per adversarial input per (data set, model, framework,
    interpreter, variant), the paper's value beside where its data set and family exist."""
    pub = _pub("Table I")
    att = _per_attack(df[df["attacked"] != "none"])
    g = att.groupby(["dataset", "paper_dataset", "model", "arch", "framework", "attacked",
                     "variant"], sort=False)
    rows = []
    for (d, pd_, m, arch, fw, interp, var), grp in g:
        fam = paper_family(arch)
        p = pub[(pub["row"] == f"{pd_}|{fw}|{fam}") & (pub["column"] == f"{interp}|{var}")]
        rows.append({"dataset": d, "model": m, "framework": LABELS[fw],
                     "interpreter": LABELS[interp], "variant": LABELS[var], "n": len(grp),
                     "seconds": grp["time_s"].mean(),
                     "paper": float(p["value"].iloc[0]) if len(p) else np.nan,
                     "paper_cell": f"{pd_} {fam}" if len(p) else ""})
    table = pd.DataFrame(rows)
    io.write_text(csv_path, table.to_csv(index=False))
    _md(table, "AdvEdge paper, Table I (reproduced): seconds per adversarial input",
        ["Our time: the batch's wall time divided by its inputs (batched attack). The paper's "
         "times are per input on its hardware (ImageNet at 224 px, CIFAR at 32 px): not "
         "comparable in absolute terms; compare the ratios between interpreters and variants.",
         "paper_cell: the paper's data set and model family beside which the value is "
         "printed (our model stands for that family).", _settings_note(df)], md_path)
    return table


def _rate_rows(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    pub = _pub("Section V-B ASR" if metric == "asr" else "Section V-B MC")
    att = _per_attack(df)
    rows = []
    for (d, pd_, m, fw, interp, var), grp in att.groupby(
            ["dataset", "paper_dataset", "model", "framework", "attacked", "variant"], sort=False):
        if metric == "asr":
            value = 100 * grp["success"].mean()
        else:
            ok = grp[grp["success"]]
            value = ok["confidence"].mean() if len(ok) else np.nan
        p = pub[pub["row"].isin([f"{pd_}|{fw}", f"{pd_}|all"]) & (pub["column"] == var)]
        rows.append({"dataset": d, "model": m, "framework": LABELS[fw],
                     "interpreter": "—" if interp == "none" else LABELS[interp],
                     "variant": LABELS[var], "n": len(grp), metric: value,
                     "paper": float(p["value"].iloc[0]) if len(p) else np.nan})
    return pd.DataFrame(rows)


def write_rate_table(df: pd.DataFrame, metric: str, csv_path, md_path) -> pd.DataFrame:
    """Table VII (``metric="asr"``, %) or VIII (``"mc"``: mean confidence of the target class
    over the successful inputs)."""
    table = _rate_rows(df, metric)
    io.write_text(csv_path, table.to_csv(index=False))
    n = "VII" if metric == "asr" else "VIII"
    what = "attack success rate (%)" if metric == "asr" else "misclassification confidence"
    _md(table, f"AdvEdge paper, Table {n} (reproduced): {what}",
        ["Success: the model predicts the target y_t on the adversarial input (targeted); "
         "inputs are correctly classified test images (Sec. V-A).",
         "paper: the values Section V-B quotes from the supplement (not available): per "
         "framework on ImageNet, per data set averaged over the frameworks on CIFAR.",
         _settings_note(df)], md_path)
    return table


def write_comparison(df: pd.DataFrame, csv_path, md_path) -> pd.DataFrame:
    """Every metric per attack and scored interpreter, the plain PGD reference beside it, and
    a one-sided paired Wilcoxon test (H1: the attack's L1 is lower than the reference's, on the
    samples both attacks turned into y_t)."""
    from scipy.stats import wilcoxon

    keys = ["dataset", "model", "seed", "framework", "interpreter"]
    rows = []
    ref_all = df[df["attacked"] == "none"]
    for (d, m, s, fw, interp, attacked, var), grp in df.groupby(
            keys[:4] + ["interpreter", "attacked", "variant"], sort=False):
        ok = grp[grp["success"]]
        row = {"dataset": d, "model": m, "seed": s, "framework": LABELS[fw],
               "interpreter": LABELS[interp],
               "attack": LABELS[var] if attacked != "none" else LABELS["plain"],
               "n": len(grp), "asr": 100 * grp["success"].mean(),
               "mc": ok["confidence"].mean() if len(ok) else np.nan,
               "l1": ok["l1"].mean(), "iou": ok["iou"].mean(), "noise": ok["noise"].mean(),
               "seconds": grp["time_s"].mean()}
        ref = ref_all[(ref_all["dataset"] == d) & (ref_all["model"] == m)
                      & (ref_all["seed"] == s) & (ref_all["interpreter"] == interp)]
        if attacked != "none" and len(ref):
            both = ok.merge(ref[ref["success"]][["sample", "l1"]], on="sample",
                            suffixes=("", "_ref"))
            row["l1_pgd"] = both["l1_ref"].mean() if len(both) else np.nan
            row["n_paired"] = len(both)
            diff = both["l1"] - both["l1_ref"]
            row["p_lower_l1"] = (float(wilcoxon(diff, alternative="less").pvalue)
                                 if len(both) >= 5 and np.any(diff != 0) else np.nan)
        rows.append(row)
    table = pd.DataFrame(rows)
    io.write_text(csv_path, table.to_csv(index=False))
    frac = sorted(set(df["iou_top_fraction"])) if len(df) else []
    _md(table, "AdvEdge comparison (reproduced): every attack against plain targeted PGD",
        ["Metrics over the successful inputs: L1 of the [0, 1] maps (per-pixel mean), IoU of "
         f"the top {', '.join(f'{100 * f:g}%' for f in frac)} pixels, noise rate 1 - SSIM; "
         "asr over all inputs; seconds per input (batched).",
         "l1_pgd: the plain PGD reference's L1 on the same samples (both successful); "
         "p_lower_l1: one-sided Wilcoxon signed-rank p-value that the attack's L1 is lower.",
         _settings_note(df)], md_path)
    return table


def box_figure(df: pd.DataFrame, number: str, paths) -> None:
    """Figures 3-5 / 10-15: one panel per framework x model, boxes per interpreter and variant
    (the plain PGD reference as a grey box), successful inputs only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from xaisec.report import save_figure

    paper_ds, metric = BOX_FIGURES[number]
    ok = df[df["success"]].copy()
    ok["attack"] = [LABELS[v] if a != "none" else "PGD" for a, v in
                    zip(ok["attacked"], ok["variant"])]
    ok["Interpreter"] = ok["interpreter"].map(LABELS)
    panels = list(ok.groupby(["framework", "model"], sort=False))
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.6 * max(len(panels), 1), 3.4),
                             squeeze=False)
    order = [a for a in ("ADV2", "AdvEdge", "AdvEdge+", "PGD") if a in set(ok["attack"])]
    palette = {"ADV2": "#1f77b4", "AdvEdge": "#ff7f0e", "AdvEdge+": "#2ca02c", "PGD": "#999999"}
    for ax, ((fw, model), grp) in zip(axes[0], panels):
        sns.boxplot(data=grp, x="Interpreter", y=metric, hue="attack", hue_order=order,
                    palette=palette, ax=ax, fliersize=2,
                    flierprops={"marker": "o", "markerfacecolor": "red",
                                "markeredgecolor": "red"})
        ax.set_title(f"{LABELS[fw]}, {model} ({', '.join(sorted(set(grp['dataset'])))})",
                     fontsize=9)
        ax.set_ylabel(METRIC_LABELS[metric], fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle(f"AdvEdge paper, Figure {number} (reproduced; the paper: {paper_ds}): "
                 f"{METRIC_LABELS[metric]}, successful inputs; outliers in red", fontsize=9)
    fig.tight_layout()
    save_figure(fig, paths)


def example_figure(number: str, run: dict, n_images: int, paths) -> None:
    """Figures 1, 2 and 9: benign and adversarial images with their maps. Figure 1: CAM maps
    of a benign, a plain PGD and an AdvEdge image; Figures 2 and 9: per interpreter, the
    benign image and map and each variant's adversarial image and map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xaisec.cache import read_explanations
    from xaisec.papers.advedge.experiment import load_adversarial, load_inputs
    from xaisec.report import save_figure

    files = run["files"]
    inp = load_inputs(files["inputs"], run["data_dir"])

    def up(m):
        return _upsample(m, inp["x"].shape[-2:])

    if number == "1":
        cols = [("benign", None), ("PGD", REFERENCE), ("AdvEdge", "pgd-cam-advedge")]
        cols = [(lab, aid) for lab, aid in cols if aid is None or f"adv_{aid}" in files]
        interps = ["cam"]
    else:
        interps = [k[len("benign_"):] for k in files if k.startswith("benign_")]
        cols = [("benign", None)] + [(LABELS[v], f"pgd-{{i}}-{v}")
                                     for v in ("adv2", "advedge", "advedge+")]
    k = min(n_images, len(inp["sample"]))
    rows = [(i, interp) for interp in interps for i in range(k)]
    fig, axes = plt.subplots(len(rows), 2 * len(cols), figsize=(1.5 * 2 * len(cols),
                                                                1.6 * len(rows)), squeeze=False)
    benign = {i: read_explanations(files[f"benign_{i}"]) for i in interps}
    cache = {}
    for r, (i, interp) in enumerate(rows):
        for c, (lab, aid) in enumerate(cols):
            ax_img, ax_map = axes[r, 2 * c], axes[r, 2 * c + 1]
            if aid is None:
                x, m, title = inp["x"][i], benign[interp].maps[i, 0], f"benign ({LABELS[interp]})"
            else:
                aid = aid.format(i=interp)
                mk = f"maps_{aid}_{interp}"
                if mk not in files:
                    ax_img.axis("off")
                    ax_map.axis("off")
                    continue
                if aid not in cache:
                    cache[aid] = (load_adversarial(files[f"adv_{aid}"]),
                                  read_explanations(files[mk]))
                adv, es = cache[aid]
                ok = "✓" if adv["success"][i] else "✗"
                x, m, title = adv["x"][i], es.maps[i, 0], f"{lab} {ok}"
            ax_img.imshow(_image(x))
            ax_img.set_title(title, fontsize=6)
            ax_map.imshow(up(m), cmap="jet", vmin=0, vmax=1)
            ax_map.set_title("map", fontsize=6)
            for a in (ax_img, ax_map):
                _off(a)
    what = {"1": "benign, standard (PGD) and dual (AdvEdge) adversarial inputs with CAM",
            "2": "benign and adversarial maps per interpreter (the paper: ImageNet, ResNet)",
            "9": "benign and adversarial maps per interpreter (the paper: CIFAR)"}[number]
    fig.suptitle(f"AdvEdge paper, Figure {number} (reproduced on {run['dataset']}, "
                 f"{run['model']}): {what}", fontsize=8)
    fig.tight_layout()
    save_figure(fig, paths)


# ---------------------------------------------------------------- transferability, outliers

def write_transfer_table(df: pd.DataFrame, csv_path, md_path) -> pd.DataFrame:
    """Table II: mean L1 of the maps of each attack's transfer subset under every interpreter
    (rows: framework, model, source interpreter; columns: target interpreter and variant),
    the paper's ImageNet cell of the same family beside (CSV: long format; Markdown: the
    paper's layout, ``ours (paper)``)."""
    pub = _pub("Table II")
    rows = []
    for (d, pd_, m, arch, fw, src, tgt, var), grp in df.groupby(
            ["dataset", "paper_dataset", "model", "arch", "framework", "source", "target",
             "variant"], sort=False):
        fam = paper_family(arch)
        p = pub[(pub["row"] == f"imagenet|{fw}|{fam}|{src}") & (pub["column"] == f"{tgt}|{var}")]
        rows.append({"dataset": d, "model": m, "framework": LABELS[fw], "source": LABELS[src],
                     "target": LABELS[tgt], "variant": LABELS[var], "n": len(grp),
                     "n_success": int(grp["n_success"].iloc[0]), "l1": grp["l1"].mean(),
                     "paper_imagenet": float(p["value"].iloc[0]) if len(p) else np.nan,
                     "diagonal": bool(grp["diagonal"].iloc[0])})
    table = pd.DataFrame(rows)
    io.write_text(csv_path, table.to_csv(index=False))
    if table.empty:
        _md(table, "AdvEdge paper, Table II (reproduced)", [], md_path)
        return table
    cell = [f"{a:.3f} ({b:.3f})" if np.isfinite(b) else f"{a:.3f}"
            for a, b in zip(table["l1"], table["paper_imagenet"])]
    keys = ["dataset", "model", "framework", "source"]
    wide = table.assign(cell=cell).pivot_table(index=keys, columns=["target", "variant"],
                                               values="cell", aggfunc="first", sort=False)
    wide.columns = [f"{t} {v}" for t, v in wide.columns]
    variants = [LABELS[v] for v in ("adv2", "advedge", "advedge+")
                if LABELS[v] in set(table["variant"])]
    n = table.drop_duplicates(keys + ["variant"]).pivot_table(
        index=keys, columns="variant", values="n", aggfunc="first", sort=False)
    counts = n.reindex(columns=variants).fillna(0).astype(int).astype(str).agg("/".join, axis=1)
    wide.insert(0, "n per variant", counts)
    _md(wide.reset_index(), "AdvEdge paper, Table II (reproduced): L1 of adversarial-to-benign "
        "maps transferred across interpreters",
        ["Rows: the interpreter the attack was made against (source); n per variant: the random "
         "successful inputs explained, in the columns' variant order (Sec. V-F: 100; 0: the "
         "attack never succeeded); columns: the interpreter explaining them "
         "(target) and the variant. The diagonal (source = target) is the attack's own L1 on "
         "the same inputs.",
         "Cells: ours (the paper's ImageNet value for the same framework, model family, source, "
         "target and variant). Our data set is not the paper's ImageNet: compare the pattern "
         "(diagonal against off-diagonal, variants against each other), not the values.",
         _settings_note(df)], md_path)
    return table


def _upsample(m, size):
    import torch

    t = torch.tensor(np.asarray(m), dtype=torch.float32)[None, None]
    return torch.nn.functional.interpolate(t, size=size, mode="bilinear",
                                           align_corners=False)[0, 0].numpy()


def _image(t):
    return t.permute(1, 2, 0).numpy().clip(0, 1)


def _off(ax):
    ax.set_xticks([])
    ax.set_yticks([])


def transfer_figure(run: dict, settings: dict, paths) -> None:
    """Figure 6: for one input, its benign maps (top row) and, per attacked (source)
    interpreter, the maps every interpreter gives the adversarial input of each variant (PGD;
    the first input in every transfer subset, else the first of each attack's subset)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xaisec.cache import read_explanations
    from xaisec.papers.advedge.experiment import load_inputs
    from xaisec.report import save_figure

    files = run["files"]
    inp = load_inputs(files["inputs"], run["data_dir"])
    size = inp["x"].shape[-2:]
    interps = [k[len("benign_"):] for k in files if k.startswith("benign_")]
    benign = {i: read_explanations(files[f"benign_{i}"]) for i in interps}
    maps = {}                      # (attack, explaining interpreter) -> {sample: map}
    for k, p in files.items():
        if k.startswith("maps_"):
            found = [(*k[len("maps_"):].rsplit("_", 1), Path(p))]
        elif k.startswith("transfer_"):
            found = [(k[len("transfer_"):], f.stem, f) for f in sorted(Path(p).glob("*.parquet"))]
        else:
            continue
        for aid, tgt, path in found:
            if aid.startswith("pgd-"):
                es = read_explanations(path)
                maps[(aid, tgt)] = dict(zip(es.sample.tolist(), es.maps[:, 0]))
    subsets = [set(v) for (aid, tgt), v in maps.items() if tgt != aid.split("-")[1]]
    common = set.intersection(*subsets) if subsets else set()
    variants = [v for v in ("adv2", "advedge", "advedge+")
                if any(a.endswith(f"-{v}") for a, _ in maps)]
    rows = [("benign", None)] + [(s, v) for s in interps for v in variants
                                 if (f"pgd-{s}-{v}", s) in maps]
    fig, axes = plt.subplots(len(rows), len(interps) + 1,
                             figsize=(1.5 * (len(interps) + 1), 1.5 * len(rows)), squeeze=False)
    first = sorted(common, key=inp["sample"].tolist().index)[0] if common else None
    for r, (src, var) in enumerate(rows):
        if src == "benign":
            sample = first if first is not None else int(inp["sample"][0])
            pos = inp["sample"].tolist().index(sample)
            axes[r, 0].imshow(_image(inp["x"][pos]))
            axes[r, 0].set_title("benign", fontsize=6)
            for c, tgt in enumerate(interps, 1):
                axes[r, c].imshow(_upsample(benign[tgt].maps[pos, 0], size), cmap="jet",
                                  vmin=0, vmax=1)
                axes[r, c].set_title(f"{LABELS[tgt]} (benign)", fontsize=6)
            continue
        aid = f"pgd-{src}-{var}"
        own = maps[(aid, src)]
        sub = [s for s in own if any(s in maps.get((aid, t), {}) for t in interps if t != src)]
        sample = first if first in own else (sub[0] if sub else None)
        axes[r, 0].set_title(f"against {LABELS[src]}\n{LABELS[var]}", fontsize=6)
        for c, tgt in enumerate(interps, 1):
            m = maps.get((aid, tgt), {}).get(sample)
            if m is None:
                axes[r, c].axis("off")
                continue
            pos = inp["sample"].tolist().index(sample)
            l1 = np.abs(_upsample(m, size) - _upsample(benign[tgt].maps[pos, 0], size)).mean()
            axes[r, c].imshow(_upsample(m, size), cmap="jet", vmin=0, vmax=1)
            axes[r, c].set_title(f"{LABELS[tgt]} L1 {l1:.2f}", fontsize=6)
        axes[r, 0].axis("off")
    for a in axes.flat:
        _off(a)
    fig.suptitle(f"AdvEdge paper, Figure 6 (reproduced on {run['dataset']}, {run['model']}, "
                 "PGD):\nmaps of adversarial inputs made against one interpreter (rows)\n"
                 "under every interpreter (columns)", fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))
    save_figure(fig, paths)


def box_outliers(df: pd.DataFrame, metric: str = "l1") -> pd.DataFrame:
    """The rows a box plot marks as outliers (above Q3 + 1.5 IQR, as seaborn/matplotlib's
    default whiskers) per framework, model, interpreter and variant, successful own-interpreter
    rows only, with the group's upper whisker limit."""
    ok = df[df["success"] & (df["interpreter"] == df["attacked"])]
    out = []
    for _, grp in ok.groupby(["dataset", "model", "framework", "interpreter", "variant"],
                             sort=False):
        q1, q3 = np.percentile(grp[metric], [25, 75])
        limit = q3 + 1.5 * (q3 - q1)
        out.append(grp[grp[metric] > limit].assign(limit=limit))
    return pd.concat(out, ignore_index=True) if out else ok.iloc[:0].assign(limit=[])


def outlier_figure(run: dict, settings: dict, paths) -> None:
    """Figure 7: per interpreter, the box plots' largest L1 outliers (any framework and
    variant): benign image and map, adversarial image and map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xaisec import io as xio
    from xaisec.cache import read_explanations
    from xaisec.papers.advedge.experiment import load_adversarial, load_inputs
    from xaisec.report import save_figure

    files = run["files"]
    inp = load_inputs(files["inputs"], run["data_dir"])
    size = inp["x"].shape[-2:]
    df = xio.read_parquet(files["scores"])
    outl = box_outliers(df).sort_values("l1", ascending=False)
    k = int(settings["outliers"]["per_interpreter"])
    interps = [k_[len("benign_"):] for k_ in files if k_.startswith("benign_")]
    rows = [r for i in interps for r in outl[outl["interpreter"] == i].head(k).itertuples()]
    fig, axes = plt.subplots(max(len(rows), 1), 4, figsize=(6.4, 1.7 * max(len(rows), 1)),
                             squeeze=False)
    if not rows:
        axes[0, 0].text(0, 0.5, "no outliers: every L1 within Q3 + 1.5 IQR", fontsize=8)
    for r, row in enumerate(rows):
        aid = f"{row.framework}-{row.attacked}-{row.variant}"
        adv = load_adversarial(files[f"adv_{aid}"])
        es = read_explanations(files[f"maps_{aid}_{row.interpreter}"])
        pos = inp["sample"].tolist().index(row.sample)
        benign = read_explanations(files[f"benign_{row.interpreter}"]).maps[pos, 0]
        panels = [(_image(inp["x"][pos]), None, "benign"),
                  (_upsample(benign, size), "jet", f"{LABELS[row.interpreter]} benign"),
                  (_image(adv["x"][pos]), None, f"{LABELS[row.framework]} {LABELS[row.variant]}"),
                  (_upsample(es.maps[pos, 0], size), "jet",
                   f"L1 {row.l1:.3f} > {row.limit:.3f}")]
        for c, (im, cmap, title) in enumerate(panels):
            axes[r, c].imshow(im, cmap=cmap, **({"vmin": 0, "vmax": 1} if cmap else {}))
            axes[r, c].set_title(title, fontsize=6)
    for a in axes.flat:
        _off(a)
    fig.suptitle(f"AdvEdge paper, Figure 7 (reproduced on {run['dataset']}, {run['model']}): "
                 f"box-plot outliers of the map L1 ({len(outl)} in all), largest first",
                 fontsize=7)
    fig.tight_layout()
    save_figure(fig, paths)
