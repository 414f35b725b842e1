"""Glue between Snakemake ``script:`` rules and the library.

Scripts in ``scripts/`` stay thin: ``with rule_context(snakemake) as ctx: <one lib call>``.
The context sends stdout/stderr to the rule's log as well as to the terminal, sets the torch
thread count from the rule's ``threads``, resolves the device from the config, and records
the provenance of the job.
"""
from __future__ import annotations

import contextlib
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from xaisec import io


class _Tee:
    def __init__(self, *streams):
        self.streams = streams

    def write(self, s):
        for st in self.streams:
            st.write(s)
            st.flush()
        return len(s)

    def flush(self):
        for st in self.streams:
            st.flush()

    def isatty(self):
        return False


@dataclass
class RuleContext:
    config: dict
    device: torch.device
    threads: int
    wildcards: dict

    def provenance(self, **extra) -> dict:
        seeds = {k: v for k, v in self.wildcards.items() if "seed" in k}
        return io.provenance(self.config, self.device, seeds or None, extra or None)


@contextlib.contextmanager
def rule_context(smk, uses_device: bool = True):
    """Set up logging, threads and device for a Snakemake script job."""
    log = Path(smk.log[0]) if len(smk.log) else None
    fh = None
    old = sys.stdout, sys.stderr
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        fh = open(log, "w", buffering=1)
        sys.stdout, sys.stderr = _Tee(old[0], fh), _Tee(old[1], fh)
    t0 = time.time()
    try:
        # BLAS work here is small (LIME's ridge fits, metrics); spinning OpenBLAS/OpenMP pools
        # beside torch's oversubscribe the cores and slowed LIME tenfold when jobs shared them
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=1, user_api="blas")
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            pass
        torch.set_num_threads(max(1, int(smk.threads)))
        device = io.resolve_device(smk.config.get("device", "auto")) if uses_device else torch.device("cpu")
        print(f"[xaisec] rule {smk.rule}, wildcards {dict(smk.wildcards)}, device {device}, "
              f"threads {smk.threads}", file=sys.stderr)
        yield RuleContext(smk.config, device, int(smk.threads), dict(smk.wildcards))
        print(f"[xaisec] done in {time.time() - t0:.1f} s", file=sys.stderr)
    except BaseException:
        traceback.print_exc(file=sys.stderr)
        raise
    finally:
        sys.stdout, sys.stderr = old
        if fh is not None:
            fh.close()
