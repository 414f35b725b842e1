"""FGSM-XAI paper: evasion attacks (FGSM, BIM) and how the explanations of the attacked inputs
compare with ground-truth object masks.

Pipeline (one function per workflow rule):

1. :func:`make_inputs` draws the evaluation images (seeded), attacks them with FGSM and BIM
   (untargeted, true labels), and writes the three input variants with the model's predictions.
2. :func:`explain_inputs` explains one variant with one method (Grad-CAM, SmoothGrad, LIME;
   the predicted class of that input) and writes an explanation cache (Parquet).
3. :func:`score` reads the caches and the ground-truth masks: IoU and RMSE of the binarised
   explanation (top 15% of pixels for Grad-CAM and SmoothGrad, LIME's own mask) per sample;
   the tables (:func:`write_iou_rmse_table`, :func:`write_accuracy_table`) and the example
   figures (:func:`example_figure`) only read what these rules wrote.

Settings (docs/settings.md, FGSM-XAI) live in the config's ``fgsmxai`` section.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from xaisec import io
from xaisec.published import published as read_published

from xaisec.data import datasets as datasets
from xaisec.attacks import make_attack
from xaisec.cache import ExplanationSet, read_explanations, write_explanations
from xaisec.evaluate import eval_indices
from xaisec.explainers import explain_batches
from xaisec.metrics.localization import aggregate, binarize_top, iou, minmax, rmse
from xaisec.tensors import nhwc_to_tensor, predict, to_float

VARIANTS = ("clean", "fgsm", "bim")
METHODS = ("smoothgrad", "gradcam", "lime")  # the paper's column order
METHOD_LABELS = {"smoothgrad": "SmoothGrad", "gradcam": "Grad-CAM", "lime": "LIME"}


def variant_label(variant: str, eps: float) -> str:
    """Row names as in the paper's tables: "Without Attack", "FGSM-2.5%", "BIM-2.5%"."""
    if variant == "clean":
        return "Without Attack"
    return f"{variant.upper()}-{100 * eps:g}%"


# ---------------------------------------------------------------- inputs (rule fgsmxai_inputs)

def _batched_attack(attack, x: torch.Tensor, y: torch.Tensor, batch_size: int, device,
                    desc: str) -> torch.Tensor:
    out = []
    for i in tqdm(range(0, len(x), batch_size), desc=desc, leave=False):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        out.append(attack(xb, yb).cpu())
    return torch.cat(out)


def make_inputs(model_path, data_dir, out_path, settings: dict, device="cpu",
                meta: dict | None = None) -> dict:
    """Draw ``settings["n_images"]`` test images (seeded, random order) and write ``out_path`` (npz) with the sample indices,
    labels, the FGSM and BIM images (float32 NCHW in [0, 1]) and every variant's prediction and
    confidence. Returns the accuracy per variant."""
    device = torch.device(device)
    model, _ = io.load_model(model_path, device)
    model.eval()
    test = datasets.load_split(Path(data_dir) / "test.npz")
    idx = eval_indices(len(test.x), settings["n_images"], settings["sample_seed"])
    x = to_float(nhwc_to_tensor(test.x[idx]))
    y = torch.as_tensor(test.y[idx], dtype=torch.long)
    eps, bim = float(settings["eps"]), settings["bim"]
    attacks = {
        "fgsm": make_attack("fgsm", model, eps=eps),
        "bim": make_attack("bim", model, eps=eps, alpha=float(bim["alpha"]), steps=int(bim["steps"])),
    }
    arrays = {"sample": idx.astype(np.int64), "label": y.numpy()}
    images = {"clean": x}
    for name, atk in attacks.items():
        images[name] = _batched_attack(atk, x, y, settings["batch_size"], device, name)
        arrays[f"x_{name}"] = images[name].numpy().astype(np.float32)
    accuracy = {}
    for v, xv in images.items():
        prob = torch.softmax(predict(model, xv, settings["batch_size"], device), 1)
        conf, pred = prob.max(1)
        arrays[f"pred_{v}"], arrays[f"conf_{v}"] = pred.numpy(), conf.numpy().astype(np.float32)
        accuracy[v] = float((pred == y).float().mean())
    linf = {v: float((images[v] - x).abs().amax()) for v in attacks}
    with io.atomic_path(out_path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    record = {**(meta or {}), "n_images": int(len(idx)), "eps": eps, "bim": bim,
              "accuracy": accuracy, "linf": linf}
    return record


def load_inputs(inputs_path, data_dir) -> dict:
    """The evaluation images of every variant (float32 NCHW tensors) with labels, predictions,
    confidences and (when the data set has them) the ground-truth masks (bool (N, H, W))."""
    with np.load(inputs_path) as f:
        arr = {k: f[k] for k in f.files}
    test = datasets.load_split(Path(data_dir) / "test.npz")
    idx = arr["sample"]
    out = {"sample": idx, "label": arr["label"],
           "x": {"clean": to_float(nhwc_to_tensor(test.x[idx]))},
           "pred": {v: arr[f"pred_{v}"] for v in VARIANTS},
           "conf": {v: arr[f"conf_{v}"] for v in VARIANTS},
           "mask": None if test.mask is None else test.mask[idx] != 0}
    for v in ("fgsm", "bim"):
        out["x"][v] = torch.from_numpy(arr[f"x_{v}"])
    return out


# ---------------------------------------------------------------- explanations (rule fgsmxai_explain)

def build_explainer(method: str, model: torch.nn.Module, settings: dict):
    """The paper's explainers with the config's settings
    (:func:`xaisec.explainers.explainer_kwargs` of the ``fgsmxai`` section): Grad-CAM at the
    last conv layer (``gradcam_layer``; null: the architecture's last conv block, or an ImageNet
    model's ``gradcam_layer``), SmoothGrad (Captum NoiseTunnel) and LIME (Captum, SLIC
    superpixels)."""
    from xaisec.explainers import explainer_from_settings

    if method not in METHODS:
        raise ValueError(f"unknown FGSM-XAI explainer {method!r}; known: {', '.join(METHODS)}")
    return explainer_from_settings(method, model, settings)


def explain_inputs(model_path, data_dir, inputs_path, variant: str, method: str, out_path,
                   settings: dict, device="cpu", meta: dict | None = None) -> None:
    """Explain one input variant with one method (the predicted class of each input) and write
    the cache. Grad-CAM and SmoothGrad store their maps; LIME stores its own binary mask (the
    ``num_features`` superpixels with the largest positive weights), as the paper scores it."""
    device = torch.device(device)
    model, model_meta = io.load_model(model_path, device)
    model.eval()
    inp = load_inputs(inputs_path, data_dir)
    x = inp["x"][variant]
    expl = build_explainer(method, model, settings)
    # LIME seeds image i of a call with seed + i: images_per_call fixes the calls
    bs = settings["batch_size"] if method != "lime" else max(1, settings["lime"]["images_per_call"])
    res = explain_batches(expl, x, batch_size=bs, device=device, progress=True,
                          desc=f"{method} on {variant}")
    maps = res.extra["mask"][:, None].float() if method == "lime" else res.maps
    pred = res.pred.cpu().numpy()
    es = ExplanationSet(
        maps=maps.float().cpu().numpy().astype(np.float32), sample=inp["sample"],
        label=inp["label"], pred=pred, confidence=res.confidence.cpu().numpy().astype(np.float32),
        target=pred.copy(),
        meta={**(meta or {}), "paper": "fgsmxai", "variant": variant, "explainer": method,
              "map_kind": "binary_mask" if method == "lime" else "attribution",
              "settings": settings, "model_path": str(model_path),
              "model_fingerprint": model_meta.get("fingerprint")})
    write_explanations(out_path, es)


# ---------------------------------------------------------------- scores, tables, figures

def score_set(es: ExplanationSet, masks: np.ndarray, top_fraction: float) -> pd.DataFrame:
    """IoU and RMSE of one cached explanation set against the ground-truth masks (N, H, W).

    Attribution maps: channel-aggregated (max |.|), binarised at their top ``top_fraction`` for
    IoU and min-max scaled to [0, 1] for RMSE. Binary masks (LIME): used as they are."""
    gt = np.asarray(masks).astype(bool)
    m = aggregate(es.maps)
    if es.meta.get("map_kind") == "binary_mask":
        expl_bin, expl_float = m != 0, (m != 0).astype(np.float64)
    else:
        expl_bin, expl_float = binarize_top(m, top_fraction), minmax(m)
    if gt.shape != expl_bin.shape:
        raise ValueError(f"explanations {expl_bin.shape} do not match the masks {gt.shape}")
    return pd.DataFrame({"sample": es.sample, "label": es.label, "pred": es.pred,
                         "correct": es.pred == es.label, "iou": iou(expl_bin, gt),
                         "rmse": rmse(expl_float, gt.astype(np.float64))})


def score(cache_paths: dict, inputs_path, data_dir, top_fraction: float) -> pd.DataFrame:
    """Per-sample scores of every cached (variant, method): ``cache_paths`` {(variant, method):
    path}. Empty frame when the data set has no ground-truth masks."""
    inp = load_inputs(inputs_path, data_dir)
    if inp["mask"] is None:
        return pd.DataFrame()
    frames = []
    for (variant, method), path in cache_paths.items():
        es = read_explanations(path)
        if not np.array_equal(es.sample, inp["sample"]):
            raise ValueError(f"{path}: cached samples differ from {inputs_path}; rerun the "
                             "explain rule")
        df = score_set(es, inp["mask"], top_fraction)
        df.insert(0, "method", method)
        df.insert(0, "variant", variant)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def published() -> pd.DataFrame:
    """The paper's published values (``resources/fgsmxai_published.csv``)."""
    return read_published("fgsmxai_published")


def _fmt_pct(v) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.2f}%"


def write_iou_rmse_table(runs: list[dict], metric: str, number: int, csv_path, md_path,
                         settings: dict) -> pd.DataFrame:
    """The paper's Table 1 (``metric="iou"``) or Table 2 (``"rmse"``): the mean over the
    evaluation images, in %, per data set/model (rows: without attack, FGSM, BIM; columns:
    SmoothGrad, Grad-CAM, LIME), with the paper's value beside each cell.

    ``runs``: [{"dataset", "model", "seed", "inputs", "data_dir", "caches": {(variant, method):
    path}}]."""
    from xaisec.report import write_table

    pub = published()
    pub = pub[pub["table"] == f"Table {number}"]
    rows = []
    for r in runs:
        df = score(r["caches"], r["inputs"], r["data_dir"], settings["top_fraction"])
        if df.empty:
            continue
        for v in VARIANTS:
            row = {"dataset": r["dataset"], "model": r["model"], "seed": r["seed"],
                   "condition": variant_label(v, settings["eps"]),
                   "n": int((df["variant"] == v).sum() // max(1, df["method"].nunique()))}
            for mth in METHODS:
                vals = df[(df["variant"] == v) & (df["method"] == mth)][metric]
                row[mth] = 100 * float(np.nanmean(vals)) if len(vals) else np.nan
                row[f"{mth}_sd"] = 100 * float(np.nanstd(vals)) if len(vals) else np.nan
                p = pub[(pub["row"] == v) & (pub["column"] == mth)]["value"]
                row[f"paper_{mth}"] = float(p.iloc[0]) if len(p) else np.nan
            rows.append(row)
    table = pd.DataFrame(rows)
    name = "IoU" if metric == "iou" else "RMSE"
    md = table.copy()
    if not md.empty:
        for mth in METHODS:
            md[METHOD_LABELS[mth]] = [f"{_fmt_pct(a)} ± {b:.1f} (paper {_fmt_pct(c)})"
                                      for a, b, c in zip(md[mth], md[f"{mth}_sd"], md[f"paper_{mth}"])]
        md = md[["dataset", "model", "seed", "condition", "n"] + [METHOD_LABELS[m] for m in METHODS]]
    notes = [
        f"{name} of the explanation with the ground-truth mask, mean ± sd over the evaluation "
        f"images, in %. Grad-CAM and SmoothGrad maps binarised at their top "
        f"{100 * settings['top_fraction']:g}% of pixels"
        + (" (RMSE: min-max scaled maps)" if metric == "rmse" else "")
        + "; LIME: its own mask of the top superpixels.",
        "Paper: EfficientNetV2-B0 (ImageNet weights) on 189 ImageNet-val images with SAM masks; "
        "here: the models and data sets named in the rows (masks: shapes' object masks, "
        "GTSRB's ROI boxes, or a user-supplied mask folder).",
        f"eps = {settings['eps']:g} (paper 0.025; the authors' notebooks 0.005), BIM "
        f"{settings['bim']['steps']} steps of {settings['bim']['alpha']:.4g}.",
    ]
    title = f"FGSM-XAI paper, Table {number} (reproduced): {name} with the ground truth"
    write_table(table, csv_path, None)
    parts = [f"# {title}\n",
             md.to_markdown(index=False) if not md.empty else "(no data set with ground-truth masks)",
             "\n" + "\n".join(f"- {n}" for n in notes)]
    io.write_text(md_path, "\n".join(parts) + "\n")
    return table


def write_accuracy_table(records: list[dict], csv_path, md_path) -> pd.DataFrame:
    """Accuracy without attack, under FGSM and under BIM, next to the paper's 89.94 / 58.73 /
    45.50% (EfficientNetV2-B0 on 189 ImageNet images)."""
    from xaisec.report import write_table

    pub = published()
    pub = pub[pub["table"] == "Section 5"].set_index("row")["value"]
    rows = []
    for r in records:
        acc = r["accuracy"]
        rows.append({"dataset": r["dataset"], "model": r["model"], "seed": r["seed"],
                     "n": r["n_images"], "eps": f"{r['eps']:g}",
                     **{f"acc_{v}": 100 * acc[v] for v in VARIANTS},
                     "drop_fgsm": 100 * (acc["clean"] - acc["fgsm"]),
                     "drop_bim": 100 * (acc["clean"] - acc["bim"]),
                     "linf_fgsm": r["linf"]["fgsm"], "linf_bim": r["linf"]["bim"]})
    rows.append({"dataset": "paper: ImageNet (189 images)", "model": "EfficientNetV2-B0",
                 "seed": "", "n": 189, "eps": "0.025",
                 **{f"acc_{v}": float(pub.get(v, np.nan)) for v in VARIANTS},
                 "drop_fgsm": float(pub.get("clean", np.nan) - pub.get("fgsm", np.nan)),
                 "drop_bim": float(pub.get("clean", np.nan) - pub.get("bim", np.nan))})
    table = pd.DataFrame(rows)
    write_table(table, csv_path, md_path, floatfmt=".2f",
                title="FGSM-XAI paper (Section 5, reproduced): accuracy (%) without attack, "
                      "under FGSM and under BIM",
                notes=["Untargeted attacks on the true label; accuracy over the evaluation "
                       "images (all drawn images, not only correctly classified ones, as in "
                       "the paper). linf: the largest pixel change measured."])
    return table


def example_figure(number: int, runs: list[dict], settings: dict, paths) -> None:
    """The paper's example figures, reproduced on the first ``n_examples`` evaluation images of
    each run: 5 images and their ground-truth masks; 6 clean images and each explainer's
    binarised explanation; 7 original, FGSM and BIM images with the predictions; 8 and 9 the
    same as 6 for the FGSM and the BIM images."""
    import matplotlib.pyplot as plt

    from xaisec.report import save_figure

    k = settings["n_examples"]
    variant = {6: "clean", 8: "fgsm", 9: "bim"}.get(number)
    if number == 5:
        cols = ["image", "ground truth"]
    elif number == 7:
        cols = ["original", "FGSM", "BIM"]
    else:
        cols = [variant] + [METHOD_LABELS[m] for m in METHODS]
    nrows = k * len(runs)
    fig, axes = plt.subplots(nrows, len(cols), figsize=(2.1 * len(cols), 2.1 * nrows),
                             squeeze=False)
    row = 0
    for r in runs:
        inp = load_inputs(r["inputs"], r["data_dir"])
        names = datasets.load_manifest(r["data_dir"]).get("class_names")
        cname = (lambda c: names[c] if names and c < len(names) else str(c))
        sets = {}
        if variant is not None:
            sets = {m: read_explanations(p) for (v, m), p in r["caches"].items() if v == variant}
        for i in range(min(k, len(inp["sample"]))):
            ax = axes[row]
            img = lambda v: inp["x"][v][i].permute(1, 2, 0).numpy().clip(0, 1)  # noqa: E731
            tag = f"{r['dataset']} #{int(inp['sample'][i])}"
            if number == 5:
                ax[0].imshow(img("clean"))
                ax[0].set_title(f"{tag}\n{cname(int(inp['label'][i]))}", fontsize=7)
                if inp["mask"] is not None:
                    ax[1].imshow(inp["mask"][i], cmap="gray")
            elif number == 7:
                for j, v in enumerate(VARIANTS):
                    ax[j].imshow(img(v))
                    ok = "✓" if inp["pred"][v][i] == inp["label"][i] else "✗"
                    ax[j].set_title(f"{cols[j]}: {cname(int(inp['pred'][v][i]))} "
                                    f"{100 * inp['conf'][v][i]:.0f}% {ok}", fontsize=7)
            else:
                ax[0].imshow(img(variant))
                ax[0].set_title(f"{tag}\npred {cname(int(inp['pred'][variant][i]))}", fontsize=7)
                for j, m in enumerate(METHODS, start=1):
                    if m not in sets:
                        continue
                    es = sets[m]
                    mp = aggregate(es.maps[i:i + 1])
                    b = (mp[0] != 0) if es.meta.get("map_kind") == "binary_mask" \
                        else binarize_top(mp, settings["top_fraction"])[0]
                    ax[j].imshow(img(variant))
                    ax[j].imshow(np.ma.masked_where(~b, b), cmap="autumn", alpha=0.55)
                    if inp["mask"] is not None:
                        ax[j].contour(inp["mask"][i], levels=[0.5], colors="cyan", linewidths=0.6)
            for a in ax:
                a.set_xticks([])
                a.set_yticks([])
            row += 1
    for j, c in enumerate(cols):
        axes[0, j].set_xlabel(c, fontsize=8)
        axes[0, j].xaxis.set_label_position("top")
    what = {5: "images and their ground-truth masks",
            6: "explanations of the original images (top 15%, ground truth outlined)",
            7: "adversarial images (FGSM, BIM) with the predictions",
            8: "explanations of the FGSM images", 9: "explanations of the BIM images"}[number]
    fig.suptitle(f"FGSM-XAI paper, Figure {number} (reproduced): {what}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, paths)
