"""Tables and figures: read results written by earlier rules, never recompute them."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from xaisec import io  # noqa: E402
from xaisec.published import published  # noqa: E402


def published_values() -> pd.DataFrame:
    """The papers' published clean accuracies, with the table and row they come from."""
    return published("published")


def write_table(df: pd.DataFrame, csv_path, md_path=None, title: str | None = None,
                notes: list[str] | None = None, floatfmt: str = ".4f") -> None:
    """Write ``df`` as CSV and as a Markdown table (atomically)."""
    with io.atomic_path(csv_path) as tmp:
        df.to_csv(tmp, index=False)
    if md_path:
        parts = [f"# {title}\n"] if title else []
        parts.append(df.to_markdown(index=False, floatfmt=floatfmt, missingval=""))
        if notes:
            parts.append("\n" + "\n".join(f"- {n}" for n in notes))
        io.write_text(md_path, "\n".join(parts) + "\n")


def save_figure(fig, paths) -> None:
    for p in paths:
        with io.atomic_path(p) as tmp:
            fig.savefig(tmp, format=Path(p).suffix[1:], dpi=150, bbox_inches="tight")
    plt.close(fig)


# ---------------------------------------------------------------- clean accuracy

def clean_accuracy_table(records: list[dict]) -> pd.DataFrame:
    """One row per trained model, then a mean +- sd row per (dataset, model) over seeds, with
    the published reference where there is one."""
    rows = []
    for r in records:
        row = {"dataset": r["dataset"], "model": r["model"], "seed": str(r["seed"]),
               "epochs": r.get("epochs"), "n_eval": r["n_samples"], "batch_size": r["batch_size"]}
        for d, a in r["accuracy"].items():
            row[f"acc_{'bn' if d == 'none' else d}"] = a
        rows.append(row)
    df = pd.DataFrame(rows).sort_values(["dataset", "model", "seed"], kind="stable")
    acc_cols = [c for c in df.columns if c.startswith("acc_")]
    agg = []
    for (ds, m), g in df.groupby(["dataset", "model"], sort=True):
        row = {"dataset": ds, "model": m, "seed": f"mean±sd (n={len(g)})",
               "epochs": g["epochs"].iloc[0], "n_eval": g["n_eval"].iloc[0],
               "batch_size": g["batch_size"].iloc[0]}
        for c in acc_cols:
            sd = g[c].std(ddof=1) if len(g) > 1 else 0.0
            row[c] = g[c].mean()
            row[c + "_sd"] = sd
        agg.append(row)
    out = pd.concat([df, pd.DataFrame(agg)], ignore_index=True)
    pub = published_values()
    pub = pub[(pub["paper"] == "cfn") & (pub["column"] == "clean_acc")]
    refs = pub.groupby(["dataset", "model"])
    out["paper_clean_acc"] = [
        "; ".join(f"{v.value:.4f}" + (f"±{v.sd:.3f}" if pd.notna(v.sd) else "") + f" ({v.table})"
                  for v in refs.get_group((d, m)).itertuples())
        if (d, m) in refs.groups else "" for d, m in zip(out["dataset"], out["model"])
    ]
    return out


def write_clean_accuracy(record_paths, csv_path, md_path) -> pd.DataFrame:
    df = clean_accuracy_table([io.read_json(p) for p in record_paths])
    notes = [
        "acc_bn: the model's own BatchNorm (running statistics); acc_cfn: BatchNorm replaced by "
        "CFN as the CFN paper's text defines it (batch statistics, no affine); acc_batchstat: "
        "batch statistics with the learned affine kept (the CFN authors' evaluation code).",
        "Evaluation images are drawn at random (seeded) from the test split and shuffled; the "
        "defenses depend on batch size and composition (batch_size column).",
    ]
    write_table(df, csv_path, md_path, title="Clean test accuracy of the trained models", notes=notes)
    return df


def training_curves_figure(metrics_paths: list, labels: list[dict], paths) -> None:
    """Test accuracy and training loss per epoch, one panel column per data set."""
    frames = []
    for p, lab in zip(metrics_paths, labels):
        m = pd.read_csv(p)
        for k, v in lab.items():
            m[k] = v
        frames.append(m)
    df = pd.concat(frames, ignore_index=True)
    df["run"] = df["model"] + " seed " + df["seed"].astype(str)
    dsets = sorted(df["dataset"].unique())
    fig, axes = plt.subplots(2, len(dsets), figsize=(4.5 * len(dsets), 6.5), squeeze=False,
                             sharex="col")
    for j, ds in enumerate(dsets):
        d = df[df["dataset"] == ds]
        sns.lineplot(data=d, x="epoch", y="test_acc", hue="run", ax=axes[0, j], marker="o",
                     markersize=3)
        sns.lineplot(data=d, x="epoch", y="train_acc", hue="run", ax=axes[0, j], linestyle="--",
                     legend=False, alpha=0.6)
        sns.lineplot(data=d, x="epoch", y="train_loss", hue="run", ax=axes[1, j], legend=False)
        axes[0, j].set_title(f"{ds}: accuracy (solid test, dashed train)")
        axes[0, j].set_ylabel("accuracy")
        axes[1, j].set_title(f"{ds}: training loss")
        axes[1, j].set_ylabel("cross-entropy")
        axes[1, j].set_yscale("log")
    fig.tight_layout()
    save_figure(fig, paths)
