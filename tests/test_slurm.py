"""The SLURM profile (workflow/profiles/slurm).

- test_slurm_profile_dry_run (default run, no SLURM needed): the smoke DAG planned with the
  profile carries the profile's resources, and downloads, tables and figures are local rules.
- test_smoke_through_slurm (slow): the smoke workflow submitted for real to the SLURM cluster
  this host can reach; `scripts/slurm_local_cluster.sh` starts a one-node one here.
  Environment: XAISEC_SLURM_PARTITION / XAISEC_SLURM_ACCOUNT (default: the cluster's default
  partition, no account), XAISEC_SLURM_GPUS=1 to keep the profile's GPU requests.
"""
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
PROFILE = REPO / "workflow" / "profiles" / "slurm"
SMOKE_SLURM_RULES = ("prepare_data", "train_clean", "evaluate_clean")
LOCAL_RULES = ("fetch_data", "table_clean_accuracy", "figure_training_curves")


def profile():
    return yaml.safe_load((PROFILE / "config.yaml").read_text())


def smk(workdir, *args, timeout=300):
    """Snakemake on the smoke config with the slurm profile, in workdir (config/ linked)."""
    if not (workdir / "config").exists():
        (workdir / "config").symlink_to(REPO / "config")  # configfile: is cwd-relative
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(workdir),
           "--configfile", str(REPO / "config" / "smoke.yaml"), "--profile", str(PROFILE), *args]
    res = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    text = res.stdout + res.stderr
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{text[-8000:]}"
    return text


def job_resources(text):
    """{rule: its `resources:` line} from Snakemake's job listing."""
    out = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", text):
        m = re.match(r"(?:local)?rule (\w+):", block)
        r = re.search(r"^\s+resources: (.*)$", block, re.M)
        if m and r:
            out[m.group(1)] = r.group(1)
    return out


@pytest.mark.workflow
def test_slurm_profile_dry_run(tmp_path):
    text = smk(tmp_path, "-n")
    res = job_resources(text)
    assert set(SMOKE_SLURM_RULES) <= set(res), text[-3000:]
    prof = profile()
    for rule in SMOKE_SLURM_RULES:
        assert re.search(r"slurm_partition=\S", res[rule]), res[rule]
        assert "slurm_account=" in res[rule], res[rule]
        for key, value in prof["set-resources"].get(rule, {}).items():
            assert f"{key}={value}," in res[rule] + ",", (rule, key, res[rule])
    # The documented GPU request and wall time of the training jobs.
    assert "gpu=1" in res["train_clean"] and "runtime=600" in res["train_clean"]
    assert "gpu=1" in res["evaluate_clean"]
    # Snakemake 9 never prints `localrule` in a dry run (jobs.py: "in dryrun, we don't want to
    # display a decision whether local or not"), so ask the parsed workflow which rules are local.
    script = textwrap.dedent(f"""
        from pathlib import Path
        from snakemake.api import SnakemakeApi
        from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings
        with SnakemakeApi(OutputSettings()) as api:
            wf = api.workflow(resource_settings=ResourceSettings(),
                              config_settings=ConfigSettings(configfiles=[Path({str(REPO / 'config' / 'smoke.yaml')!r})]),
                              snakefile=Path({str(REPO / 'workflow' / 'Snakefile')!r}),
                              workdir=Path({str(tmp_path)!r}))
            print("LOCALRULES", *sorted(wf._workflow._localrules))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("LOCALRULES")), None)
    assert line, out.stdout + out.stderr
    local = set(line.split()[1:])
    assert set(LOCAL_RULES) <= local and not local & set(SMOKE_SLURM_RULES), local


# ----------------------------------------------------------------------------- real SLURM


def _slurm_up():
    if not (shutil.which("sbatch") and shutil.which("sinfo")):
        return False
    try:
        res = subprocess.run(["sinfo", "-h", "-o", "%a"], capture_output=True, text=True,
                             timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0 and "up" in res.stdout


def _sinfo(fmt):
    return subprocess.run(["sinfo", "-h", "-o", fmt], capture_output=True, text=True,
                          timeout=20).stdout.split()


def slurm_overrides(plan):
    """CLI arguments that adapt the profile to the cluster at hand and keep everything else.

    plan: {rule: resources line} of a dry run with the profile. A command-line
    --default-resources or --set-resources replaces the profile's whole mapping (it is not
    merged), so both are rebuilt here from the profile with only cluster-specific values
    changed: partition, account, no GPUs (a GRES-free cluster rejects --gpus) and CPUs and
    memory per job capped to one node (more would pend forever)."""
    prof = profile()
    default_partition = next((p.rstrip("*") for p in _sinfo("%P") if p.endswith("*")), None)
    partition = os.environ.get("XAISEC_SLURM_PARTITION") or default_partition
    account = os.environ.get("XAISEC_SLURM_ACCOUNT") or "''"  # '' -> no -A at all
    max_cpus = max(int(re.match(r"\d+", c).group()) for c in _sinfo("%c"))
    max_mem = max(int(re.match(r"\d+", m).group()) for m in _sinfo("%m"))
    keep_gpus = os.environ.get("XAISEC_SLURM_GPUS") == "1"

    def fit(key, value):
        if key == "cpus_per_task":
            return min(int(value), max_cpus)
        if key == "mem_mb":
            return min(int(value), max_mem)
        if key == "gpu" and not keep_gpus:
            return 0
        return value

    defaults = {**prof["default-resources"], "slurm_partition": partition, "slurm_account": account}
    per_rule = {rule: dict(res) for rule, res in prof["set-resources"].items()}
    for rule, line in plan.items():  # rule-level requests (e.g. resources: gpu=1)
        for key in ("gpu", "cpus_per_task", "mem_mb"):
            m = re.search(rf"\b{key}=(\d+)", line)
            if m and str(fit(key, m.group(1))) != m.group(1):
                per_rule.setdefault(rule, {})[key] = m.group(1)
    args = ["--default-resources", *(f"{k}={fit(k, v)}" for k, v in defaults.items())]
    args += ["--set-resources", *(f"{rule}:{k}={fit(k, v)}"
                                  for rule, res in per_rule.items() for k, v in res.items())]
    # Without slurmdbd `sacct` fails ("Slurm accounting storage is disabled") and the plugin
    # would never see a job finish: ask squeue (finished jobs stay there for MinJobAge).
    sacct = subprocess.run(["sacct", "-X", "-n"], capture_output=True, text=True, timeout=20) \
        if shutil.which("sacct") else None
    if sacct is None or sacct.returncode != 0:
        args += ["--slurm-status-command", "squeue"]
    return args


@pytest.mark.slow
def test_smoke_through_slurm(tmp_path):
    if not _slurm_up():
        pytest.skip("no SLURM cluster answers (scripts/slurm_local_cluster.sh starts one)")
    plan = job_resources(smk(tmp_path, "-n"))
    text = smk(tmp_path, *slurm_overrides(plan), "--slurm-keep-successful-logs",
               "--slurm-init-seconds-before-status-checks", "10", timeout=3600)
    out = tmp_path / "results" / "smoke"
    assert (out / "tables" / "clean_accuracy.csv").stat().st_size > 0
    assert (out / "tables" / "clean_accuracy.md").exists()
    png = out / "figures" / "training_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The compute rules ran as SLURM jobs (one log each in the profile's slurm-logdir) ...
    logdir = tmp_path / profile()["slurm-logdir"]
    for rule in SMOKE_SLURM_RULES:
        assert re.search(rf"Job \d+ has been submitted with SLURM jobid \d+ "
                         rf"\(log: \S*/rule_{rule}/", text), rule
        assert list((logdir / f"rule_{rule}").rglob("*.log")), rule
    # ... and tables and figures on the submitting host.
    for rule in ("table_clean_accuracy", "figure_training_curves"):
        assert f"localrule {rule}:" in text
        assert not (logdir / f"rule_{rule}").exists()
