"""What the workflow builds, as pure functions of the validated config (torch-free).

:class:`Plan` holds the paths and targets every paper shares (data, clean models); each
paper's targets live with that paper (``xaisec.papers.<paper>.targets``) as a subclass. The
Snakemake rules call these methods as input and params functions, so planning imports neither
torch nor matplotlib, and the same code is unit-tested without Snakemake.

Params functions return exactly the config keys a job reads (:func:`pick`), so that a setting
reruns only the jobs that read it.
"""
from __future__ import annotations

import hashlib
import os
import stat

from xaisec.catalog import IMAGENET_ARCHS, model_info


class PlanError(ValueError):
    """A requested target cannot be built from this config; the message says what to add."""


def pick(section: dict, *keys: str) -> dict:
    """Only ``keys`` of a config section (a rule's params must name what its job reads)."""
    missing = [k for k in keys if k not in section]
    if missing:
        raise KeyError(f"config section lacks {missing} (has {sorted(section)})")
    return {k: section[k] for k in keys}


def needs(files, target: str, what: str):
    """``files``, or a clear error when a requested target has nothing to be built from."""
    if not files:
        raise PlanError(f"{target} needs {what}; the config has none (add them, see "
                        "config/README.md)")
    return files


def alternatives(keys) -> str:
    """A wildcard regex matching exactly ``keys`` (longest first), or nothing."""
    return "|".join(sorted(keys, key=len, reverse=True)) or "__none__"


def source_signature(source: str | os.PathLike | None) -> str | None:
    """A cheap fingerprint of a local ``data.<name>.source`` that changes whenever its content
    may have changed, even when its modification time went backwards (an older archive copied
    back with ``cp -p``): the size and mtime_ns of an archive, or a digest of the relative path,
    size and mtime_ns of every file under a folder.  Only ``stat`` calls, nothing is read, so
    the workflow can compute it at every plan.  ``None`` for ``source=None`` (the official
    download), ``"missing"`` for a path that does not exist."""
    if source is None:
        return None
    src = os.path.expanduser(os.fspath(source))
    try:
        st = os.stat(src)
    except OSError:
        return "missing"
    if not stat.S_ISDIR(st.st_mode):
        return f"file size={st.st_size} mtime_ns={st.st_mtime_ns}"
    h = hashlib.sha256()
    n = 0
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                fst = os.stat(path)
            except OSError:  # a dangling link, or removed meanwhile
                continue
            rel = os.path.relpath(path, src)
            h.update(f"{rel}\0{fst.st_size}\0{fst.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
            n += 1
    return f"folder files={n} sha256={h.hexdigest()[:16]}"


class Plan:
    """Paths and targets shared by every paper: data sets and clean models."""

    def __init__(self, config: dict):
        self.config = config
        self.R = config["results"]
        self.pretrained_models = [k for k, v in config["models"].items()
                                  if v["arch"] in IMAGENET_ARCHS]
        self.trained_models = [k for k in config["models"] if k not in self.pretrained_models]

    # ------------------------------------------------------------ paths

    def data_dir(self, dataset: str) -> str:
        return f"{self.R}/data/{dataset}"

    def model_dir(self, dataset: str, model: str, seed) -> str:
        return f"{self.R}/{dataset}/{model}/seed{seed}"

    def table(self, name: str) -> list[str]:
        return [f"{self.R}/tables/{name}.{ext}" for ext in ("csv", "md")]

    def figure(self, name: str) -> list[str]:
        return [f"{self.R}/figures/{name}.{ext}" for ext in ("png", "pdf")]

    def model_info(self, keys) -> dict[str, dict]:
        """{key: {arch, regime}} from the models' config entries."""
        return model_info(self.config["models"], keys)

    # ------------------------------------------------------------ data

    def data_files(self, wildcards) -> dict:
        d = self.data_dir(wildcards.dataset)
        files = {"test": f"{d}/test.npz", "manifest": f"{d}/manifest.json"}
        if wildcards.dataset != "imagenet":  # ImageNet: evaluation images only
            files["train"] = f"{d}/train.npz"
        return files

    def data_source(self, wildcards):
        return self.config["data"][wildcards.real_dataset]["source"]

    def data_checksum(self, wildcards):
        return self.config["data"][wildcards.real_dataset]["checksum"]

    def local_source(self, wildcards):
        """A local ``data.<ds>.source`` (archive or folder, relative to the directory Snakemake
        runs in, ``~`` expanded), or None for the official download."""
        src = self.config["data"][wildcards.real_dataset].get("source")
        return None if src is None else os.path.expanduser(str(src))

    def fetch_inputs(self, wildcards) -> dict:
        """A local source is an input of fetch_data, so that a newer one refetches."""
        src = self.local_source(wildcards)
        return {} if src is None else {"source": src}

    def source_signature(self, wildcards):
        """... and its signature a param, so that one replaced by an older copy refetches too."""
        return source_signature(self.local_source(wildcards))

    def raw_dir(self, wildcards) -> str:
        return f"{self.R}/data/{wildcards.real_dataset}/raw"

    def prepare_inputs(self, wildcards) -> dict:
        if wildcards.dataset == "shapes":
            return {}
        return {"record": f"{self.R}/data/{wildcards.dataset}/raw.json"}

    def shapes_settings(self, wildcards):
        """The generator settings, which only the ``shapes`` data set reads."""
        return self.config["data"]["shapes"] if wildcards.dataset == "shapes" else None

    # ------------------------------------------------------------ clean models

    def clean_runs(self) -> list[tuple]:
        c = self.config["clean"]
        return [(d, m, s) for d in c["datasets"] for m in c["models"] for s in c["seeds"]]

    def clean_accuracy_inputs(self, wildcards) -> list[str]:
        return [f"{self.model_dir(*r)}/clean/accuracy.json" for r in self.clean_runs()]

    def training_metrics_inputs(self, wildcards) -> list[str]:
        return [f"{self.model_dir(*r)}/clean/metrics.csv" for r in self.clean_runs()]

    def training_labels(self) -> list[dict]:
        return [{"dataset": d, "model": m, "seed": s} for d, m, s in self.clean_runs()]

    def train_params(self, wildcards) -> dict:
        c = self.config
        return {**c["clean"]["train"], **c["clean"]["overrides"].get(wildcards.dataset, {}),
                **c["models"].get(wildcards.model, {}).get("train", {})}

    def model_config(self, wildcards) -> dict:
        return self.config["models"][wildcards.model]

    def init_model(self, wildcards) -> dict:
        """The checkpoint a fine-tuned model starts from (``models.<key>.init``), if any."""
        init = self.config["models"][wildcards.model].get("init")
        if init is None:
            return {}
        return {"init": f"{self.model_dir(wildcards.dataset, init, wildcards.seed)}"
                        "/clean/model.pt"}

    def clean_evaluation(self) -> dict:
        """evaluate_clean / evaluate_scenario read these evaluation keys."""
        return pick(self.config["evaluation"], "defenses", "batch_size", "n_samples", "seed")

    def clean_targets(self) -> list[str]:
        return self.table("clean_accuracy") + self.figure("training_curves")
