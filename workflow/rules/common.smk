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
DATASETS = ("cifar10", "cifar100", "gtsrb", "shapes", "imagenet")
REAL_DATASETS = ("cifar10", "cifar100", "gtsrb", "imagenet")
# torchvision ImageNet networks: loaded pretrained (rule pretrained_model), never trained
from xaisec.models import IMAGENET_ARCHS  # noqa: E402

PRETRAINED_MODELS = [k for k, v in config["models"].items() if v["arch"] in IMAGENET_ARCHS]
TRAINED_MODELS = [k for k in config["models"] if k not in PRETRAINED_MODELS]


def _alternatives(keys):
    return "|".join(sorted(keys, key=len, reverse=True)) or "__none__"

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
    scenario="c3|c5",
    n=r"\d+",


def code_version(*modules):
    """Hash of the lib/ modules a rule runs, so that editing them reruns the rule."""
    h = hashlib.sha256()
    for m in sorted(set(modules) | {"io"}):
        h.update((LIB / f"{m}.py").read_bytes())
    return h.hexdigest()[:16]


def prepare_code_version(wildcards):
    extra = {"shapes": ("shapes",), "imagenet": ("imagenet",)}.get(wildcards.dataset, ())
    return code_version("datasets", "tasks", *extra)


def data_dir(dataset):
    return f"{R}/data/{dataset}"


def data_files(wildcards):
    d = data_dir(wildcards.dataset)
    files = {"test": f"{d}/test.npz", "manifest": f"{d}/manifest.json"}
    if wildcards.dataset != "imagenet":  # ImageNet: evaluation images only
        files["train"] = f"{d}/train.npz"
    return files


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
    return train_settings(config, wildcards.dataset, wildcards.model)


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


# ---------------------------------------------------------------- CFN: the rest of the paper

from xaisec.cfn_report import SRC_FIGURES, WEIGHT_FIGURES, model_regime  # noqa: E402


def first_seed():
    return config["clean"]["seeds"][0]


def runs_of_regime(dataset, regime, attacks=None, losses=None):
    return [r for r in backdoor_runs() if r[0] == dataset and model_regime(r[1]) == regime
            and (attacks is None or r[3] in attacks) and (losses is None or r[5] in losses)]


def cfn_table5_inputs():
    d = config["backdoor"]["tables"]["table5"]
    return per_sample_files(runs_of_regime(d, "nobn", losses=("mse",))
                            + runs_of_regime(d, "frozenbn", losses=("mse",)))


def cfn_table8_inputs():
    return per_sample_files(runs_of_regime(config["backdoor"]["tables"]["table8"], "softplus",
                                           losses=("mse",)))


def cfn_srcp_inputs(number):
    spec = SRC_FIGURES[int(number)]
    regime = spec["models"]
    if regime == "bn":  # Figures 12, 13: the runs of Figures 5, 6
        runs = [r for r in runs_where(None, spec["attacks"], ("mse",)) if model_regime(r[1]) == "bn"]
    else:
        d = config["backdoor"]["tables"]["table8" if regime == "softplus" else "table5"]
        runs = runs_of_regime(d, regime, spec["attacks"], ("mse",))
    return per_sample_files(runs)


def scenario_runs():
    sc = config["backdoor"]["scenarios"]
    return [(d, m, s, a, e, sc["loss"], c) for d in sc["datasets"] for m in sc["models"]
            for s in config["clean"]["seeds"] for a in sc["attacks"] for e in sc["explainers"]
            for c in sc["scenarios"]]


def scenario_dir(d, m, s, a, e, lo, c):
    return f"{run_dir(d, m, s, a, e, lo)}-{c}"


def cfn_table7_inputs(wildcards):
    runs = scenario_runs()
    return {"scenario": [f"{scenario_dir(*r)}/accuracy.json" for r in runs],
            "meta": [f"{scenario_dir(*r)}/model.json" for r in runs],
            "clean": [f"{model_dir(*r[:3])}/clean/accuracy.json" for r in runs]}


def weight_pairs(number):
    w = config["backdoor"]["weights"]
    regimes = w["vgg"] if int(number) == 11 else w["resnet"]
    pairs = []
    for regime, key in regimes.items():
        for r in backdoor_runs():
            if r[0] == w["dataset"] and r[1] == key:
                pairs.append({"regime": regime, "model": key,
                              "original": f"{model_dir(*r[:3])}/clean/model.pt",
                              "attacked": f"{run_dir(*r)}/model.pt"})
    return pairs


def cfn_weight_inputs(number):
    return sorted({p for q in weight_pairs(number) for p in (q["original"], q["attacked"])})


def ablation_run():
    a = config["backdoor"]["ablation"]
    return (a["dataset"], a["model"], first_seed(), a["attack"], a["explainer"], a["loss"])


def ablation_csv():
    return f"{run_dir(*ablation_run())}/batchsize.csv"


# Figures 1, 2, 19-24: (data set key, explainer, attacks); Figure 4: the final layer's
# activation of the RH/Grad-CAM model, BN against CFN (the paper does not name the attack)
EXAMPLE_FIGURES = {
    1: ("cifar", "gradcam", ("sf", "rh", "fd")), 2: ("cifar", "gradcam", ("sf", "rh", "fd")),
    4: ("cifar", "gradcam", ("rh",)),
    19: ("cifar", "gradcam", ("fd",)), 20: ("cifar", "gradcam", ("rh",)),
    21: ("cifar", "gradcam", ("sf",)), 22: ("gtsrb", "relevancecam", ("fd",)),
    23: ("gtsrb", "relevancecam", ("rh",)), 24: ("gtsrb", "relevancecam", ("sf",)),
}


def example_runs(number):
    ex = config["backdoor"]["examples"]
    key, xai, attacks = EXAMPLE_FIGURES[int(number)]
    d = ex[key]
    return {a: (d, ex["model"], first_seed(), a, xai, ex["loss"]) for a in attacks}


def cfn_example_inputs(wildcards):
    runs = example_runs(wildcards.n)
    d, m, s = next(iter(runs.values()))[:3]
    return {"test": f"{data_dir(d)}/test.npz", "manifest": f"{data_dir(d)}/manifest.json",
            "original": f"{model_dir(d, m, s)}/clean/model.pt",
            **{a: f"{run_dir(*r)}/model.pt" for a, r in runs.items()}}


def cfn_example_spec(wildcards):
    n = int(wildcards.n)
    key, xai, attacks = EXAMPLE_FIGURES[n]
    what = {1: "attacks and defenses", 2: "attack profiles",
            4: f"final-layer activation of triggered inputs, {attacks[0].upper()} model, BN vs CFN"
            }.get(n, f"{attacks[0].upper()} attack and defense")
    return {"explainer": xai, "attacks": list(attacks), "kind": "activations" if n == 4 else "examples",
            "title": f"CFN paper, Figure {n} (reproduced): {what}, "
                     f"{config['backdoor']['examples'][key]}, {xai}"}


def _needs(files, target, what):
    """``files``, or a clear error when a requested target has nothing to be built from."""
    if not files:
        raise WorkflowError(f"{target} needs {what}; the config has none (add them, see "
                            "config/README.md)")
    return files


def cfn_table_extra_inputs(wildcards):
    n = int(wildcards.n)
    if n == 5:
        d = config["backdoor"]["tables"]["table5"]
        return {"per_sample": _needs(cfn_table5_inputs(), "CFN Table 5",
                                     f"attacked runs (MSE) of a nobn or frozenbn model on {d} "
                                     "in backdoor.experiments")}
    if n == 8:
        d = config["backdoor"]["tables"]["table8"]
        return {"per_sample": _needs(cfn_table8_inputs(), "CFN Table 8",
                                     f"attacked runs (MSE) of a softplus model on {d} in "
                                     "backdoor.experiments")}
    if n == 7:
        _needs(scenario_runs(), "CFN Table 7", "scenario runs (backdoor.scenarios)")
        return cfn_table7_inputs(wildcards)
    return {}  # Table 6: the scenario matrix, no inputs


def cfn_figure_extra_inputs(wildcards):
    n = int(wildcards.n)
    if n in SRC_FIGURES:
        return {"per_sample": _needs(cfn_srcp_inputs(n), f"CFN Figure {n}",
                                     f"attacked runs (MSE) of {SRC_FIGURES[n]['models']} models "
                                     "in backdoor.experiments")}
    if n in WEIGHT_FIGURES:
        w = config["backdoor"]["weights"]
        regimes = w["vgg"] if n == 11 else w["resnet"]
        return {"models": _needs(cfn_weight_inputs(n), f"CFN Figure {n}",
                                 f"attacked runs of the models {sorted(regimes.values())} on "
                                 f"{w['dataset']} in backdoor.experiments")}
    if n in (8, 9):
        return {"csv": ablation_csv()}
    return cfn_example_inputs(wildcards)


def cfn_figure_extra_params(wildcards):
    n = int(wildcards.n)
    if n in SRC_FIGURES:
        return {"kind": "src"}
    if n in WEIGHT_FIGURES:
        return {"kind": "weights", "pairs": weight_pairs(n)}
    if n in (8, 9):
        return {"kind": "batchsize"}
    return cfn_example_spec(wildcards)


def cfn_extra_targets():
    if not backdoor_runs():  # the CFN part is switched off (e.g. an ImageNet-only config)
        return []
    out = []
    if cfn_table5_inputs():
        out += [f"{R}/tables/cfn_table5.{e}" for e in ("csv", "md")]
    if cfn_table8_inputs():
        out += [f"{R}/tables/cfn_table8.{e}" for e in ("csv", "md")]
    out += [f"{R}/tables/cfn_table6.{e}" for e in ("csv", "md")]
    if scenario_runs():
        out += [f"{R}/tables/cfn_table7.{e}" for e in ("csv", "md")]
    for n in SRC_FIGURES:
        if n > 6 and cfn_srcp_inputs(n):
            out += [f"{R}/figures/cfn_fig{n}.{e}" for e in ("png", "pdf")]
    for n in WEIGHT_FIGURES:
        if weight_pairs(n):
            out += [f"{R}/figures/cfn_fig{n}.{e}" for e in ("png", "pdf")]
    out += [f"{R}/figures/cfn_fig{n}.{e}" for n in (8, 9) for e in ("png", "pdf")]
    for n in EXAMPLE_FIGURES:
        out += [f"{R}/figures/cfn_fig{n}.{e}" for e in ("png", "pdf")]
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
    return table_targets() + figure_targets() + cfn_targets() + cfn_extra_targets() + fgsmxai_targets() + exiaa_targets()


onstart:
    # Provenance of the whole run: the resolved config and the software that ran it.
    write_json(
        Path(R) / "provenance" / "workflow.json",
        provenance(config, extra={"targets": all_targets()}),
    )


def model_config(wildcards):
    return config["models"][wildcards.model]
