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


wildcard_constraints:
    dataset="|".join(DATASETS),
    real_dataset="|".join(REAL_DATASETS),
    model="|".join(sorted(config["models"], key=len, reverse=True)) or "none",
    seed=r"\d+",


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


def table_targets():
    return [f"{R}/tables/clean_accuracy.{ext}" for ext in ("csv", "md")]


def figure_targets():
    return [f"{R}/figures/training_curves.{ext}" for ext in ("png", "pdf")]


def all_targets():
    return table_targets() + figure_targets()


onstart:
    # Provenance of the whole run: the resolved config and the software that ran it.
    write_json(
        Path(R) / "provenance" / "workflow.json",
        provenance(config, extra={"targets": all_targets()}),
    )


def model_config(wildcards):
    return config["models"][wildcards.model]
