# Helpers, config validation and the target lists of every table and figure.
import hashlib
import sys
from pathlib import Path

# lib/ is importable without an install (scripts do the same through scripts/_lib.py).
LIB_ROOT = str(Path(workflow.basedir).parent / "lib")
if LIB_ROOT not in sys.path:
    sys.path.insert(0, LIB_ROOT)

from xaisec.config import ConfigError, train_settings, validate
from xaisec.io import provenance, write_json

try:
    validate(config)
except ConfigError as e:
    raise WorkflowError(str(e)) from None

R = config["results"]
DATASETS = ("cifar10", "cifar100", "gtsrb", "shapes")
REAL_DATASETS = ("cifar10", "cifar100", "gtsrb")
LIB = Path(workflow.basedir).parent / "lib" / "xaisec"


ATTACKS = ("sf", "rh", "fd")
CFN_EXPLAINERS = ("grad", "gradcam", "relevancecam")
LOSSES = ("mse", "dssim")
RUN_RE = f"({'|'.join(ATTACKS)})-({'|'.join(CFN_EXPLAINERS)})-({'|'.join(LOSSES)})"


wildcard_constraints:
    dataset="|".join(DATASETS),
    attack="|".join(ATTACKS),
    explainer="|".join(CFN_EXPLAINERS + ("cam",)),
    loss="|".join(LOSSES),
    defense="none|cfn|batchstat",
    source=f"clean|backdoor/{RUN_RE}",
    real_dataset="|".join(REAL_DATASETS),
    model="|".join(sorted(config["models"], key=len, reverse=True)) or "none",
    seed=r"\d+",
    variant="clean|fgsm|bim",
    fxm="smoothgrad|gradcam|lime",
    exm="saliency|ig|deepliftshap",
    selection="runnerup|others|top|low",


def code_version(*modules):
    """Hash of the lib/ modules a rule runs, so that editing them reruns the rule."""
    h = hashlib.sha256()
    for m in sorted(set(modules) | {"io"}):
        h.update((LIB / f"{m}.py").read_bytes())
    return h.hexdigest()[:16]


def prepare_code_version(wildcards):
    extra = ("shapes",) if wildcards.dataset == "shapes" else ()
    return code_version("datasets", "tasks", *extra)


def data_dir(dataset):
    return f"{R}/data/{dataset}"


def data_files(wildcards):
    d = data_dir(wildcards.dataset)
    return {"train": f"{d}/train.npz", "test": f"{d}/test.npz", "manifest": f"{d}/manifest.json"}


def data_source(wildcards):
    return config["data"][wildcards.real_dataset]["source"]


def data_checksum(wildcards):
    return config["data"][wildcards.real_dataset]["checksum"]


def raw_dir(wildcards):
    return f"{R}/data/{wildcards.real_dataset}/raw"


def prepare_inputs(wildcards):
    if wildcards.dataset == "shapes":
        return {}
    return {"record": f"{R}/data/{wildcards.dataset}/raw.json"}


def model_dir(dataset, model, seed):
    return f"{R}/{dataset}/{model}/seed{seed}"


def clean_runs():
    c = config["clean"]
    return [(d, m, s) for d in c["datasets"] for m in c["models"] for s in c["seeds"]]


def clean_accuracy_inputs(wildcards):
    return [f"{model_dir(d, m, s)}/clean/accuracy.json" for d, m, s in clean_runs()]


def training_metrics_inputs(wildcards):
    return [f"{model_dir(d, m, s)}/clean/metrics.csv" for d, m, s in clean_runs()]


def training_labels():
    return [{"dataset": d, "model": m, "seed": s} for d, m, s in clean_runs()]


def train_params(wildcards):
    return train_settings(config, wildcards.dataset)


# ---------------------------------------------------------------- CFN backdoors


def backdoor_runs():
    """Every (dataset, model, seed, attack, explainer, loss) of backdoor.experiments."""
    runs = []
    for exp in config["backdoor"]["experiments"]:
        for d in exp["datasets"]:
            for m in exp.get("models") or config["clean"]["models"]:
                for s in config["clean"]["seeds"]:
                    for a in exp["attacks"]:
                        for e in exp["explainers"]:
                            for lo in exp["losses"]:
                                runs.append((d, m, s, a, e, lo))
    return list(dict.fromkeys(runs))


def run_dir(d, m, s, a, e, lo):
    return f"{model_dir(d, m, s)}/backdoor/{a}-{e}-{lo}"


def backdoor_hyper(wildcards):
    return config["backdoor"]["hyper"][wildcards.attack][wildcards.loss][wildcards.explainer]


def trigger_params():
    f = config["backdoor"]["finetune"]
    return {"row": f["trigger_row"], "col": f["trigger_col"]}


def cache_file(source_dir, defense, explainer, variant):
    return f"{source_dir}/cache/{defense}-{explainer}-{variant}.parquet"


def evaluate_backdoor_inputs(wildcards):
    w = wildcards
    clean_dir = f"{model_dir(w.dataset, w.model, w.seed)}/clean"
    rdir = run_dir(w.dataset, w.model, w.seed, w.attack, w.explainer, w.loss)
    inputs = {f"original_{v}": cache_file(clean_dir, "none", w.explainer, v)
              for v in ("clean", "triggered")}
    for d in config["evaluation"]["defenses"]:
        for v in ("clean", "triggered"):
            inputs[f"{d}_{v}"] = cache_file(rdir, d, w.explainer, v)
    return inputs


# The CFN paper's Tables 1-4: (data set, attacks, losses, laid out by attack?)
_T = config["backdoor"]["tables"]
CFN_TABLES = {
    1: (_T["table1"], ("sf",), LOSSES, False),
    2: (_T["table2"], ("rh",), LOSSES, False),
    3: (_T["table3"], ("fd",), LOSSES, False),
    4: (_T["table4"], ATTACKS, ("mse",), True),
}
# Figures 5 and 6: SRC distributions (attacks shown)
CFN_FIGURES = {5: ("sf", "rh"), 6: ("fd",)}


def runs_where(datasets=None, attacks=None, losses=None):
    return [r for r in backdoor_runs()
            if (datasets is None or r[0] in datasets) and (attacks is None or r[3] in attacks)
            and (losses is None or r[5] in losses)]


def per_sample_files(runs):
    return [f"{run_dir(*r)}/per_sample.parquet" for r in runs]


def cfn_table_inputs(wildcards):
    d, attacks, losses, _ = CFN_TABLES[int(wildcards.n)]
    return per_sample_files(runs_where([d], attacks, losses))


def cfn_table_spec(wildcards):
    d, attacks, losses, by_attack = CFN_TABLES[int(wildcards.n)]
    return {"dataset": d, "attacks": list(attacks), "losses": list(losses),
            "by_attack": by_attack, "table": f"Table {wildcards.n}"}


def cfn_figure_inputs(wildcards):
    return per_sample_files(runs_where(None, CFN_FIGURES[int(wildcards.n)], ("mse",)))


def cfn_comparison_inputs(wildcards):
    runs = [r for n in CFN_TABLES for r in runs_where(
        [CFN_TABLES[n][0]], CFN_TABLES[n][1], CFN_TABLES[n][2])]
    return per_sample_files(list(dict.fromkeys(runs)))


def cfn_comparison_tables():
    return {f"Table {n}": t[0] for n, t in CFN_TABLES.items()}


def cfn_targets():
    out = []
    for n, (d, attacks, losses, _) in CFN_TABLES.items():
        if runs_where([d], attacks, losses):
            out += [f"{R}/tables/cfn_table{n}.{ext}" for ext in ("csv", "md")]
    for n, attacks in CFN_FIGURES.items():
        if runs_where(None, attacks, ("mse",)):
            out += [f"{R}/figures/cfn_fig{n}.{ext}" for ext in ("png", "pdf")]
    if out:
        out += [f"{R}/tables/cfn_comparison.{ext}" for ext in ("csv", "md")]
    return out


# ---------------------------------------------------------------- FGSM-XAI

# data sets whose prepared splits carry ground-truth masks (IoU/RMSE need them)
MASKED_DATASETS = ("shapes", "gtsrb", "imagenet")


def fgsmxai_runs(masked_only=False):
    f = config["fgsmxai"]
    return [(d, m, s) for d in f["datasets"] for m in f["models"] for s in f["seeds"]
            if not masked_only or d in MASKED_DATASETS]


def fgsmxai_dir(d, m, s):
    return f"{model_dir(d, m, s)}/fgsmxai"


def fgsmxai_caches(d, m, s):
    """{(variant, method): cache path} of one run."""
    return {(v, x): f"{fgsmxai_dir(d, m, s)}/cache/{v}-{x}.parquet"
            for v in ("clean", "fgsm", "bim") for x in config["fgsmxai"]["explainers"]}


def _fgsmxai_selected(wildcards):
    """Runs of a table (1, 2: data sets with masks only) or a figure (5-9: all)."""
    masked = str(wildcards.get("n", "")) in ("1", "2")
    return fgsmxai_runs(masked_only=masked)


def fgsmxai_table_inputs(wildcards):
    inputs = {}
    for d, m, s in _fgsmxai_selected(wildcards):
        key = f"{d}_{m}_{s}"
        inputs[f"inputs_{key}"] = f"{fgsmxai_dir(d, m, s)}/inputs.npz"
        inputs[f"test_{key}"] = f"{data_dir(d)}/test.npz"
        inputs[f"manifest_{key}"] = f"{data_dir(d)}/manifest.json"
        for (v, x), p in fgsmxai_caches(d, m, s).items():
            inputs[f"cache_{key}_{v}_{x}"] = p
    return inputs


fgsmxai_figure_inputs = fgsmxai_table_inputs


def fgsmxai_run_params(wildcards):
    return [{"dataset": d, "model": m, "seed": s, "data_dir": data_dir(d),
             "inputs": f"{fgsmxai_dir(d, m, s)}/inputs.npz",
             "caches": fgsmxai_caches(d, m, s)} for d, m, s in _fgsmxai_selected(wildcards)]


def fgsmxai_accuracy_inputs(wildcards):
    return [f"{fgsmxai_dir(d, m, s)}/accuracy.json" for d, m, s in fgsmxai_runs()]


def fgsmxai_targets():
    if not fgsmxai_runs():
        return []
    out = [f"{R}/tables/fgsmxai_accuracy.{ext}" for ext in ("csv", "md")]
    if fgsmxai_runs(masked_only=True):
        out += [f"{R}/tables/fgsmxai_table{n}.{ext}" for n in (1, 2) for ext in ("csv", "md")]
    out += [f"{R}/figures/fgsmxai_fig{n}.{ext}" for n in (5, 6, 7, 8, 9) for ext in ("png", "pdf")]
    return out


# ---------------------------------------------------------------- EXIAA

# table -> explainer (Table 1: DeepLIFT SHAP; B.1-B.3: Saliency, IG, DeepLIFT SHAP)
EXIAA_TABLES = {"1": "deepliftshap", "B1": "saliency", "B2": "ig", "B3": "deepliftshap"}


def exiaa_runs(datasets=None):
    e = config["exiaa"]
    return [(d, m, s) for d in e["datasets"] for m in e["models"] for s in e["seeds"]
            if datasets is None or d in datasets]


def exiaa_grid_file(d, m, s, explainer, selection):
    return f"{model_dir(d, m, s)}/exiaa/{explainer}-{selection}.parquet"


def exiaa_table_inputs(wildcards):
    e = EXIAA_TABLES[wildcards.t]
    return [exiaa_grid_file(d, m, s, e, "runnerup") for d, m, s in exiaa_runs()]


def exiaa_figure_inputs(wildcards):
    e = config["exiaa"]
    if wildcards.f == "5":
        runs, sels = exiaa_runs(e["fig5"]["datasets"]), ("runnerup", "others")
    elif wildcards.f == "A1":
        runs, sels = exiaa_runs(e["figA1"]["datasets"]), ("top", "low")
    else:
        runs, sels = exiaa_runs(), ("runnerup",)
    return [exiaa_grid_file(d, m, s, x, sel) for d, m, s in runs for x in e["explainers"]
            for sel in sels]


def exiaa_targets():
    e = config["exiaa"]
    if not exiaa_runs():
        return []
    out = [f"{R}/tables/exiaa_table{t}.{ext}" for t, x in EXIAA_TABLES.items()
           if x in e["explainers"] for ext in ("csv", "md")]
    figs = ["2", "3", "4"]
    if exiaa_runs(e["fig5"]["datasets"]):
        figs.append("5")
    if exiaa_runs(e["figA1"]["datasets"]):
        figs.append("A1")
    return out + [f"{R}/figures/exiaa_fig{f}.{ext}" for f in figs for ext in ("png", "pdf")]


def table_targets():
    return [f"{R}/tables/clean_accuracy.{ext}" for ext in ("csv", "md")]


def figure_targets():
    return [f"{R}/figures/training_curves.{ext}" for ext in ("png", "pdf")]


def all_targets():
    return table_targets() + figure_targets() + cfn_targets() + fgsmxai_targets() + exiaa_targets()


onstart:
    # Provenance of the whole run: the resolved config and the software that ran it.
    write_json(
        Path(R) / "provenance" / "workflow.json",
        provenance(config, extra={"targets": all_targets()}),
    )


def model_config(wildcards):
    return config["models"][wildcards.model]
