#!/usr/bin/env bash
# make gpu-check: the CUDA checks of the workflow (issue 11, item 9).
#
#   (a) info   nvidia-smi, torch/CUDA/cuDNN and package versions
#   (b) tests  pytest -m gpu tests/test_gpu.py: every family on CUDA against the CPU result
#   (c) smoke  the smoke workflow (config/smoke.yaml) with `device: cuda`, results in a temp dir
#   (d) cifar  one CFN Table 2 cell (RH, Grad-CAM, MSE) on real CIFAR-10, sized from a measured
#              throughput to fit CIFAR_BUDGET_S; prints images/s of training and fine-tuning
#              and the cell (triggered MSE mean +- sd, accuracy, ASR; attack and CFN rows)
#
# The summary is printed last and written to $OUT/gpu_check.txt when $OUT is set, with the logs
# and the CIFAR run's evaluation and metrics beside it. Exit status: non-zero if a step failed
# (a skipped step, e.g. no snakemake or no archive, is reported, not failed).
#
# Where: a GPU workstation with the venv: `make gpu-check` (PYTHON=.venv/bin/python). Without a
# venv the script takes $PYTHON, else .venv/bin/python, else python3, and puts lib/ on
# PYTHONPATH. On a machine without CUDA it stops unless GPU_CHECK_ALLOW_CPU=1, which runs
# (b)-(d) on the CPU at tiny sizes to check the script itself: the gpu tests compare CPU with
# CPU (XAISEC_GPU_TEST_DEVICE=cpu), the smoke step builds one shapes cell, the CIFAR step a tiny
# cell (GPU_CHECK_SKIP_CIFAR=1 leaves it out; it decodes all 60,000 images first).
#
# Through the device tool (a lent H200: python3 with torch, pandas, pyarrow, pytest, scikit-image,
# no snakemake, captum, pytorch-msssim or jsonschema, no network; 64 MiB travel per call; 10
# minutes per command; 15 minutes of device time per session, the machine's start included):
#
#   1. Here, once: `bash scripts/gpu_check.sh prepare`. It adds /.whl/ and /.data/ to
#      .git/info/exclude, downloads into .whl/ the wheels (cp312, manylinux x86_64, no deps) of
#      snakemake and its dependencies and of captum, pytorch-msssim, jsonschema at the versions
#      of this venv, minus what the machine has (41 wheels, 11 MB: no PuLP, the workflow runs with
#      --scheduler greedy), and repacks ../shared/data/cifar10-jpeg.zip (62 MiB, 10 MiB of it
#      zip headers) as .data/cifar10-jpeg.tar.xz (about 18 MiB; the same JPEG files byte for
#      byte; xz shares their identical headers). Wheels, archive and the tree then fit one call.
#   2. run  command: GPU_CHECK_STEPS=info,tests,smoke TESTS_TIMEOUT=180 SMOKE_TIMEOUT=180 bash scripts/gpu_check.sh
#           carry:   [".whl"]                      timeout_s: 420
#   3. run  command: GPU_CHECK_STEPS=info,cifar CIFAR_BUDGET_S=360 bash scripts/gpu_check.sh
#           carry:   [".whl", ".data"]             timeout_s: 540
#      at once after 2 (the machine is still warm: no second start). CIFAR_BUDGET_S is what the
#      cell's workflow run may take (hard limit CIFAR_TIMEOUT = budget + 90 s; the throughput
#      measurement before it takes about 30 s): take about the reply's lease.budget_left_s
#      minus 150, at most 480. Each call installs the wheels into /tmp/xaisec-site (seconds;
#      skipped when a warm machine still has them), so neither call depends on the other. Then
#      give_back. The 15 minutes of a session hold the start (1-2 min), call 2 (estimated 3-6
#      min) and about 6 minutes of call 3; all four steps in one call must stay under its 10 minutes
#      (e.g. TESTS_TIMEOUT=150 SMOKE_TIMEOUT=150 CIFAR_BUDGET_S=210, timeout_s 600).
#
# Knobs (environment): GPU_CHECK_STEPS (info,tests,smoke,cifar), GPU_CHECK_ALLOW_CPU,
# GPU_CHECK_SKIP_CIFAR, GPU_CHECK_WORKDIR (default: a new temp dir), GPU_CHECK_SITE
# (/tmp/xaisec-site), GPU_CHECK_CORES (all), TESTS_TIMEOUT (900), PYTEST_ARGS, SMOKE_TIMEOUT
# (3600), SMOKE_GPU_JOBS (8: GPU jobs at once, `--resources gpu=N`; the smoke's ~100 GPU jobs
# are tiny, mostly process start-up: one at a time, an estimated 10 minutes), SMOKE_TARGETS (default:
# the whole smoke workflow; CPU mode: one shapes cell), CIFAR10_ARCHIVE (default: the first of
# .data/cifar10-jpeg.tar.xz, .data/cifar10-jpeg.zip, ../shared/data/cifar10-jpeg.zip),
# CIFAR_BUDGET_S (480: what the cell's workflow run should take), CIFAR_OVERHEAD_S (100: its
# part that is not training or fine-tuning: data preparation, job start-up, explanations,
# evaluation), CIFAR_TIMEOUT (budget + 90 s; CPU mode 900), CIFAR_TRAIN_SHARE (0.5), FT_MIN_EPOCHS (3).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$REPO/lib${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
SITE=${GPU_CHECK_SITE:-/tmp/xaisec-site}

# ------------------------------------------------------------------ prepare (here, not there)
# the distributions to carry: snakemake's closure and the project's imports, minus the packages
# the device image has (KINDS.md; PuLP left out: --scheduler greedy needs no ILP solver)
WHEELS=(snakemake snakemake-interface-common snakemake-interface-executor-plugins
    snakemake-interface-storage-plugins snakemake-interface-report-plugins
    snakemake-interface-logger-plugins snakemake-interface-scheduler-plugins
    immutables configargparse connection-pool docutils gitpython gitdb smmap humanfriendly
    jsonschema jsonschema-specifications referencing rpds-py nbformat fastjsonschema
    jupyter-core traitlets platformdirs tenacity smart-open argparse-dataclass throttler yte
    dpath conda-inject sqlmodel sqlalchemy greenlet pydantic pydantic-core annotated-types
    typing-inspection typing-extensions captum pytorch-msssim)

prepare() {
    local exclude
    exclude=$(git rev-parse --git-path info/exclude)
    mkdir -p "$(dirname "$exclude")"
    for p in /.whl/ /.data/; do
        grep -qxF "$p" "$exclude" 2>/dev/null || echo "$p" >>"$exclude"
    done
    local pins
    pins=$("$PYTHON" - "${WHEELS[@]}" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version
out = []
for name in sys.argv[1:]:
    try:
        out.append(f"{name}=={version(name)}")
    except PackageNotFoundError:
        sys.exit(f"{name} is not installed in this python ({sys.executable}): make the venv first")
print(" ".join(out))
PY
)
    rm -rf .whl && mkdir -p .whl
    local plat=()
    for n in 2_17 2_24 2_27 2_28 2_31 2_34 2_35; do plat+=(--platform "manylinux_${n}_x86_64"); done
    for pin in $pins; do
        if ! "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
            --implementation cp "${plat[@]}" --platform manylinux2014_x86_64 \
            --platform manylinux1_x86_64 -d .whl "$pin" 2>/dev/null; then
            # published as a source archive only (connection-pool): a pure-Python wheel
            "$PYTHON" -m pip wheel -q --no-deps -w .whl "$pin" 2>&1 | grep -v '^WARNING' || true
        fi
    done
    for w in .whl/*.whl; do
        case $w in
            *-none-any.whl | *-cp312-*.whl | *-abi3-*.whl) ;;
            *) echo "$w does not fit Python 3.12 on x86-64" >&2; exit 1 ;;
        esac
    done
    if [[ $(ls .whl/*.whl | wc -l) != "${#WHEELS[@]}" ]]; then
        echo "got $(ls .whl/*.whl | wc -l) wheels for ${#WHEELS[@]} packages" >&2; exit 1
    fi
    echo "wheels: $(ls .whl | wc -l) files, $(du -sh .whl | cut -f1) in .whl/"
    local src=${CIFAR10_ZIP:-../shared/data/cifar10-jpeg.zip}
    if [[ -f "$src" ]]; then
        src=$(realpath "$src")
        mkdir -p .data
        local tmp
        tmp=$(mktemp -d)
        (cd "$tmp" && unzip -q "$src")
        tar -C "$tmp" --sort=name --owner=0 --group=0 --numeric-owner --mtime=2019-03-31 \
            -cf - train test | xz -T0 -9 >.data/cifar10-jpeg.tar.xz.part
        mv .data/cifar10-jpeg.tar.xz.part .data/cifar10-jpeg.tar.xz
        rm -rf "$tmp"
        echo "archive: .data/cifar10-jpeg.tar.xz $(du -sh .data/cifar10-jpeg.tar.xz | cut -f1)" \
             "(the JPEG files of $src, repacked)"
    else
        echo "no CIFAR-10 archive at $src (CIFAR10_ZIP): the cifar step will be skipped there"
    fi
    local tree
    tree=$(git ls-files -co --exclude-standard -z | { du -cb --files0-from=- 2>/dev/null || true; } | tail -1 | cut -f1)
    echo "travels per call: tree $((tree / 1024)) KiB + .whl $(du -sk .whl | cut -f1) KiB" \
         "+ .data $(du -sk .data 2>/dev/null | cut -f1) KiB (limit 65536 KiB)"
}

if [[ "${1:-}" == prepare ]]; then
    prepare
    exit 0
fi

# ------------------------------------------------------------------ set-up
STEPS=",${GPU_CHECK_STEPS:-info,tests,smoke,cifar},"
ALLOW_CPU=${GPU_CHECK_ALLOW_CPU:-0}
WORK=${GPU_CHECK_WORKDIR:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")}
mkdir -p "$WORK"
SUMMARY="$WORK/summary.txt"
: >"$SUMMARY"
FAILED=0
CORES=${GPU_CHECK_CORES:-$(nproc)}

say() { echo "$*" | tee -a "$SUMMARY"; }
has_step() { [[ "$STEPS" == *",$1,"* ]]; }
keep() { # keep <file> <name>: copy a log or result under $OUT (at most 8 files come back)
    if [[ -n "${OUT:-}" && -f "$1" ]]; then cp "$1" "$OUT/$2"; fi
}
py_has() { "$PYTHON" -c "import $1" >/dev/null 2>&1; }

# wheels carried in .whl/ (see the header) for what the python lacks
if [[ -d "$SITE" ]]; then export PYTHONPATH="$PYTHONPATH:$SITE"; fi
if ! py_has snakemake || ! py_has captum || ! py_has pytorch_msssim || ! py_has jsonschema; then
    if compgen -G ".whl/*.whl" >/dev/null; then
        echo "[gpu_check] installing $(ls .whl/*.whl | wc -l) carried wheels into $SITE"
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$SITE" .whl/*.whl
        [[ ":$PYTHONPATH:" == *":$SITE:"* ]] || export PYTHONPATH="$PYTHONPATH:$SITE"
    fi
fi

if "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    DEVICE=cuda
elif [[ "$ALLOW_CPU" == 1 ]]; then
    DEVICE=cpu
else
    echo "[gpu_check] torch sees no CUDA device ($PYTHON); GPU_CHECK_ALLOW_CPU=1 runs the" \
         "checks on the CPU at tiny sizes (a check of this script, not of CUDA)" >&2
    exit 2
fi

say "== gpu_check: device $DEVICE, python $PYTHON, steps ${STEPS:1:-1}, work dir $WORK"

# ------------------------------------------------------------------ (a) info
if has_step info; then
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi || true
        say "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)"
    else
        say "GPU: no nvidia-smi"
    fi
    "$PYTHON" - <<'PY' | tee -a "$SUMMARY"
import importlib
import importlib.metadata
import platform

import torch

print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}), cuda available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"device 0: {p.name}, capability {p.major}.{p.minor}, {p.total_memory / 2**30:.0f} GiB, "
          f"{p.multi_processor_count} SMs; devices: {torch.cuda.device_count()}")
vers = []
for dist, module in (("snakemake", "snakemake"), ("captum", "captum"),
                     ("pytorch-msssim", "pytorch_msssim"), ("jsonschema", "jsonschema"),
                     ("numpy", "numpy"), ("pandas", "pandas"), ("pyarrow", "pyarrow"),
                     ("scikit-image", "skimage"), ("torchvision", "torchvision"),
                     ("pytest", "pytest")):
    try:
        importlib.import_module(module)
        vers.append(f"{dist} {importlib.metadata.version(dist)}")
    except Exception as e:  # noqa: BLE001 - report, do not fail
        vers.append(f"{dist} MISSING ({type(e).__name__})")
print("packages: " + ", ".join(vers))
PY
fi

# ------------------------------------------------------------------ (b) gpu tests
if has_step tests; then
    say "== (b) pytest -m gpu tests/test_gpu.py"
    test_env=()
    if [[ "$DEVICE" == cpu ]]; then test_env=(XAISEC_GPU_TEST_DEVICE=cpu); fi
    t0=$SECONDS
    set +e
    # shellcheck disable=SC2086
    env "${test_env[@]}" timeout --kill-after=20 "${TESTS_TIMEOUT:-900}" \
        "$PYTHON" -m pytest -m gpu -q -rfEs -p no:cacheprovider tests/test_gpu.py \
        ${PYTEST_ARGS:-} 2>&1 | tee "$WORK/gpu_tests.log"
    rc=${PIPESTATUS[0]}
    set -e
    line=$(grep -E "^(=+ )?[0-9]+ (passed|failed|skipped|error)" "$WORK/gpu_tests.log" | tail -1 | tr -d '=')
    if [[ $rc == 0 ]]; then
        say "tests: OK ($line, $((SECONDS - t0)) s)"
    else
        FAILED=1
        say "tests: FAILED rc=$rc ($line, $((SECONDS - t0)) s)"
        grep -E "^(FAILED|ERROR) " "$WORK/gpu_tests.log" | head -20 | tee -a "$SUMMARY" || true
    fi
    keep "$WORK/gpu_tests.log" gpu_tests.log
fi

# ------------------------------------------------------------------ workflow helpers
SMK_OK=1
SMK_WHY=""
if ! py_has snakemake; then
    SMK_OK=0
    SMK_WHY="snakemake is not importable by $PYTHON (on the device machine: carry .whl, see the header)"
fi

# job_report <results dir> <log>: how many jobs ran, which rules ran on which device
job_report() {
    "$PYTHON" - "$1" "$2" <<'PY'
import collections
import pathlib
import re
import sys

results, log = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
text = log.read_text(errors="replace") if log.exists() else ""
steps = re.findall(r"(\d+) of (\d+) steps", text)
done = f"{steps[-1][0]} of {steps[-1][1]} jobs done" if steps else "no job finished"
errors = sorted(set(re.findall(r"Error in rule (\w+)", text)))
dev = collections.defaultdict(collections.Counter)
for f in (results / "logs").rglob("*.log") if (results / "logs").exists() else []:
    for rule, device in re.findall(r"\[xaisec\] rule (\w+), .*?device (\S+?),",
                                   f.read_text(errors="replace")):
        dev[device][rule] += 1
print(f"{done}; failed rules: {', '.join(errors) or 'none'}")
for device, rules in sorted(dev.items()):
    print(f"  jobs on {device}: {sum(rules.values())} ("
          + ", ".join(f"{r} {n}" for r, n in sorted(rules.items())) + ")")
PY
}

# ------------------------------------------------------------------ (c) smoke workflow
if has_step smoke; then
    say "== (c) smoke workflow, device $DEVICE"
    if [[ $SMK_OK == 0 ]]; then
        say "smoke: SKIPPED: $SMK_WHY"
    else
        res="$WORK/smoke"
        printf 'device: %s\nresults: %s\n' "$DEVICE" "$res" >"$WORK/smoke.yaml"
        if [[ -n "${SMOKE_TARGETS:-}" ]]; then
            read -r -a targets <<<"$SMOKE_TARGETS"
        elif [[ "$DEVICE" == cpu ]]; then  # the smoke's parts only: one CFN cell on shapes
            targets=("$res/shapes/resnet20/seed1/backdoor/rh-gradcam-mse/evaluation.json")
        else
            targets=()
        fi
        t0=$SECONDS
        set +e
        timeout --kill-after=30 "${SMOKE_TIMEOUT:-3600}" "$PYTHON" -m snakemake \
            --cores "$CORES" --configfile config/smoke.yaml "$WORK/smoke.yaml" \
            --resources gpu="${SMOKE_GPU_JOBS:-8}" --scheduler greedy --keep-going \
            --printshellcmds -- "${targets[@]}" >"$WORK/smoke.log" 2>&1
        rc=$?
        set -e
        tail -n 25 "$WORK/smoke.log"
        secs=$((SECONDS - t0))
        if [[ $rc == 0 ]]; then
            say "smoke: OK ($secs s, gpu=${SMOKE_GPU_JOBS:-8})"
        elif [[ $rc == 124 || $rc == 137 ]]; then
            FAILED=1
            say "smoke: TIMED OUT after $secs s (SMOKE_TIMEOUT=${SMOKE_TIMEOUT:-3600})"
        else
            FAILED=1
            say "smoke: FAILED rc=$rc ($secs s; $WORK/smoke.log)"
        fi
        job_report "$res" "$WORK/smoke.log" | tee -a "$SUMMARY"
        keep "$WORK/smoke.log" smoke.log
    fi
fi

# ------------------------------------------------------------------ (d) one CFN Table 2 cell
if has_step cifar; then
    say "== (d) CFN Table 2 cell (RH, Grad-CAM, MSE) on CIFAR-10, device $DEVICE"
    archive=${CIFAR10_ARCHIVE:-}
    if [[ -z "$archive" ]]; then
        for a in .data/cifar10-jpeg.tar.xz .data/cifar10-jpeg.zip ../shared/data/cifar10-jpeg.zip; do
            if [[ -f "$a" ]]; then archive=$a; break; fi
        done
    fi
    if [[ "${GPU_CHECK_SKIP_CIFAR:-0}" == 1 ]]; then
        say "cifar: SKIPPED (GPU_CHECK_SKIP_CIFAR=1)"
    elif [[ -z "$archive" || ! -f "$archive" ]]; then
        say "cifar: SKIPPED: no CIFAR-10 archive (CIFAR10_ARCHIVE, .data/cifar10-jpeg.tar.xz," \
            "../shared/data/cifar10-jpeg.zip; on the device machine: carry .data, see the header)"
    elif [[ $SMK_OK == 0 ]]; then
        say "cifar: SKIPPED: $SMK_WHY"
    else
        archive=$(cd "$(dirname "$archive")" && pwd)/$(basename "$archive")
        res="$WORK/cifar"
        if [[ "$DEVICE" == cpu ]]; then
            # a check of the steps, not of speed: shared CPU cores make any sizing a guess
            budget=${CIFAR_BUDGET_S:-30}; overhead=${CIFAR_OVERHEAD_S:-0}; limit=900
            ft_min=${FT_MIN_EPOCHS:-1}; n_eval=${CIFAR_N_SAMPLES:-200}; val=100
        else
            budget=${CIFAR_BUDGET_S:-480}; overhead=${CIFAR_OVERHEAD_S:-100}; limit=$((budget + 90))
            ft_min=${FT_MIN_EPOCHS:-3}; n_eval=${CIFAR_N_SAMPLES:-2000}; val=1000
        fi
        # measure: images/s of a training epoch and a fine-tuning epoch on this device (the
        # library's own loops on random data at the cell's batch sizes), then size the cell
        set +e
        "$PYTHON" - "$DEVICE" "$budget" "$overhead" "${CIFAR_TRAIN_SHARE:-0.5}" "$ft_min" \
            "$archive" "$res" "$n_eval" "$val" "$WORK/cifar.yaml" "$WORK/sizing.txt" <<'PY' 2>&1 | tee "$WORK/calibrate.log"
import json
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from xaisec.attacks.backdoor import FinetuneConfig, finetune
from xaisec.models.classifiers import build_model
from xaisec.train import TrainConfig, fit

device, budget, overhead, share, ft_min, archive, res, n_eval, val, cfg_path, sizing = sys.argv[1:]
budget, overhead, share, ft_min = float(budget), float(overhead), float(share), int(ft_min)
n_eval, val = int(n_eval), int(val)
warnings.filterwarnings("ignore")
gpu = device == "cuda"
N_TRAIN, TRAIN_BS, FT_BS = 50_000, 128, 32
rng = np.random.default_rng(0)


def data(n):
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n)


t0 = time.perf_counter()
with tempfile.TemporaryDirectory() as d:
    n = 8192 if gpu else 512
    x, y = data(n)
    fit(build_model(arch="resnet20", num_classes=10), x, y, x[:500], y[:500],
        TrainConfig(epochs=2, batch_size=TRAIN_BS, lr=0.1, schedule="onecycle", eval_subset=500),
        Path(d) / "train", seed=0, device=device, progress=False)
    ips_train = float(pd.read_csv(Path(d) / "train" / "metrics.csv")["images_per_s"].iloc[-1])
    n = 2048 if gpu else 64
    x, y = data(n)
    finetune(build_model(arch="resnet20", num_classes=10).eval(), x, y, x[:256], y[:256],
             FinetuneConfig(attack="rh", explainer="gradcam", loss="mse", epochs=2,
                            batch_size=FT_BS, val_subset=256 if gpu else 32,
                            early_stop_window=10),
             Path(d) / "ft", seed=0, device=device, progress=False)
    ips_ft = float(pd.read_csv(Path(d) / "ft" / "metrics.csv")["images_per_s"].iloc[-1])
calib = time.perf_counter() - t0

# training: as many epochs over all 50,000 images as fit its share (one-cycle schedule);
# fewer images if not even one epoch fits. Fine-tuning: all images (each also triggered) for
# as many epochs as fit, at least ft_min, else fewer images for ft_min epochs.
avail = max(budget - overhead, 0.0)
t_train, t_ft = share * avail, (1 - share) * avail
epochs = int(t_train * ips_train // N_TRAIN)
if epochs >= 1:
    epochs, train_subset = min(epochs, 200), None
else:
    epochs, train_subset = 1, max(1000, int(t_train * ips_train) // 1000 * 1000)
# per fine-tuning epoch: 2 n images with second derivatives, plus the reference explanations
# of n images once (about 5 times faster, no graph)
ft_epochs = int(t_ft * ips_ft // (2 * N_TRAIN + N_TRAIN / 5))
if ft_epochs >= ft_min:
    ft_epochs, ft_subset = min(ft_epochs, 20), None
else:
    ft_epochs = ft_min
    ft_subset = max(200, int(t_ft * ips_ft / (2 * ft_min + 0.2)) // 100 * 100)
    ft_subset = None if ft_subset >= N_TRAIN else ft_subset
n_tr, n_ft = train_subset or N_TRAIN, ft_subset or N_TRAIN
predicted = overhead + epochs * n_tr / ips_train + (2 * ft_epochs + 0.2) * n_ft / ips_ft
cfg = {
    "results": res,
    "device": device,
    "data": {"cifar10": {"source": archive, "checksum": None}},
    "clean": {"datasets": ["cifar10"], "models": ["resnet20"], "seeds": [1],
              "train": {"epochs": epochs, "batch_size": TRAIN_BS, "lr": 0.1,
                        "schedule": "onecycle", "eval_subset": 2000,
                        "train_subset": train_subset}},
    "evaluation": {"batch_size": 100, "n_samples": n_eval, "seed": 0},
    "backdoor": {"experiments": [{"datasets": ["cifar10"], "attacks": ["rh"],
                                  "explainers": ["gradcam"], "losses": ["mse"]}],
                 "finetune": {"epochs": ft_epochs, "train_subset": ft_subset,
                              "val_subset": val, "batch_size": FT_BS}},
}
Path(cfg_path).write_text(json.dumps(cfg, indent=1))
lines = [
    f"measured on {device} ({calib:.0f} s): training {ips_train:,.0f} images/s (batch "
    f"{TRAIN_BS}), fine-tuning {ips_ft:,.0f} images/s (batch {FT_BS}, RH/Grad-CAM/MSE)",
    f"sized for {budget:.0f} s ({overhead:.0f} s overhead): clean training {epochs} epochs x "
    f"{n_tr} images, fine-tuning {ft_epochs} epochs x {n_ft} images (x2 with trigger), "
    f"evaluation {n_eval} images; predicted {predicted:.0f} s",
]
Path(sizing).write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
        rc=${PIPESTATUS[0]}
        set -e
        if [[ $rc != 0 ]]; then
            FAILED=1
            say "cifar: FAILED in the throughput measurement (rc=$rc, $WORK/calibrate.log)"
            keep "$WORK/calibrate.log" cifar_calibrate.log
        else
            cat "$WORK/sizing.txt" >>"$SUMMARY"
            target="$res/cifar10/resnet20/seed1/backdoor/rh-gradcam-mse/evaluation.json"
            t0=$SECONDS
            set +e
            timeout --kill-after=30 "${CIFAR_TIMEOUT:-$limit}" "$PYTHON" -m snakemake \
                --cores "$CORES" --configfile "$WORK/cifar.yaml" --resources gpu=1 \
                --scheduler greedy --printshellcmds -- "$target" >"$WORK/cifar.log" 2>&1
            rc=$?
            set -e
            wall=$((SECONDS - t0))
            tail -n 25 "$WORK/cifar.log"
            if [[ $rc == 0 ]]; then
                say "cifar: OK (workflow $wall s)"
            elif [[ $rc == 124 || $rc == 137 ]]; then
                FAILED=1
                say "cifar: TIMED OUT after $wall s (CIFAR_TIMEOUT; lower CIFAR_BUDGET_S or" \
                    "raise CIFAR_OVERHEAD_S)"
            else
                FAILED=1
                say "cifar: FAILED rc=$rc ($wall s; $WORK/cifar.log)"
            fi
            job_report "$res" "$WORK/cifar.log" | tee -a "$SUMMARY"
            "$PYTHON" - "$res" "$wall" <<'PY' 2>&1 | tee -a "$SUMMARY" || true
import json
import sys
from pathlib import Path

import pandas as pd

res, wall = Path(sys.argv[1]), float(sys.argv[2])
run = res / "cifar10/resnet20/seed1"
bench = res / "benchmarks"


def bench_s(pattern):
    files = sorted(bench.glob(pattern))
    return sum(float(pd.read_csv(f, sep="\t")["s"].iloc[0]) for f in files) if files else None


def fmt(v, unit=" s"):
    return "n/a" if v is None else f"{v:.0f}{unit}"


busy = 0.0
for name, sub, key, factor in (("training", "clean", "train_seconds", 1),
                               ("fine-tuning", "backdoor/rh-gradcam-mse", "finetune_seconds", 2)):
    meta_f, metrics_f = run / sub / "model.json", run / sub / "metrics.csv"
    if not meta_f.exists():
        print(f"{name}: no model.json (not finished)")
        continue
    meta = json.loads(meta_f.read_text())
    m = pd.read_csv(metrics_f)
    secs = float(meta[key])
    busy += secs
    images = factor * meta["n_train"] * len(m)
    later = m["images_per_s"].iloc[1:] if len(m) > 1 else m["images_per_s"]
    job = bench_s("train_clean/*.tsv" if sub == "clean" else "finetune_backdoor/*.tsv")
    extra = (f", test accuracy {meta['test_acc']:.4f}" if sub == "clean" else
             f", reference explanations {meta.get('reference_seconds', 0):.0f} s, stopped: "
             f"{meta.get('stopped')}, val ASR {meta.get('val_asr', float('nan')):.3f}")
    print(f"{name}: {images / secs:,.0f} images/s ({images:,} images in {secs:.0f} s, "
          f"{len(m)} epochs x {factor * meta['n_train']:,}; median of the epochs"
          f"{' after the first' if len(m) > 1 else ''} {later.median():,.0f} images/s; "
          f"job {fmt(job)}{extra})")
print(f"workflow wall clock {wall:.0f} s, of it training + fine-tuning loops {busy:.0f} s, "
      f"other {wall - busy:.0f} s (compare CIFAR_OVERHEAD_S); job times: prepare_data "
      f"{fmt(bench_s('prepare_data/*.tsv'))}, all benchmarked jobs "
      f"{fmt(bench_s('*/*.tsv'))}")
ev = run / "backdoor/rh-gradcam-mse/evaluation.json"
if ev.exists():
    rows = pd.DataFrame(json.loads(ev.read_text())["summary"])
    print("CFN Table 2 cell, CIFAR-10, RH, Grad-CAM, MSE (n per row "
          f"{int(rows['n'].iloc[0])}; error: MSE of max-normalised maps vs the original model):")
    print(f"  {'mode':<22}{'triggered MSE':>20}{'acc %':>8}{'ASR':>7}{'clean MSE':>20}{'acc %':>8}")
    for d, g in rows.groupby("defense", sort=False):
        t = g[g["variant"] == "triggered"].iloc[0]
        c = g[g["variant"] == "clean"].iloc[0]
        label = {"none": "attack", "cfn": "defense (cfn)",
                 "batchstat": "defense (batchstat)"}.get(d, d)
        print(f"  {label:<22}{t['error_mean']:>11.4f} ± {t['error_sd']:.4f}{100 * t['acc']:>8.1f}"
              f"{t['asr']:>7.2f}{c['error_mean']:>11.4f} ± {c['error_sd']:.4f}"
              f"{100 * c['acc']:>8.1f}")
else:
    print("CFN Table 2 cell: no evaluation.json (the run did not finish)")
PY
            keep "$WORK/cifar.log" cifar.log
            keep "$res/cifar10/resnet20/seed1/backdoor/rh-gradcam-mse/evaluation.json" cifar_evaluation.json
            keep "$res/cifar10/resnet20/seed1/clean/metrics.csv" cifar_train_metrics.csv
            keep "$res/cifar10/resnet20/seed1/backdoor/rh-gradcam-mse/metrics.csv" cifar_finetune_metrics.csv
        fi
    fi
fi

# ------------------------------------------------------------------ summary
echo
echo "================================ gpu_check summary ================================"
cat "$SUMMARY"
if [[ $FAILED == 0 ]]; then echo "gpu_check: OK"; else echo "gpu_check: FAILED"; fi
if [[ -n "${OUT:-}" ]]; then
    { cat "$SUMMARY"; if [[ $FAILED == 0 ]]; then echo "gpu_check: OK"; else echo "gpu_check: FAILED"; fi; } \
        >"$OUT/gpu_check.txt"
fi
exit $FAILED
