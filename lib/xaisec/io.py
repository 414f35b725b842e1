"""Files at rest: atomic writes, checkpoints with metadata, provenance records.

Every output is written to a temporary file in the same directory and moved into place with
``os.replace``, so a run killed at any moment leaves either the old file or the new one, never
half of one. Checkpoints are plain state dicts, loaded with ``weights_only=True``.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import torch

from .models import ModelSpec, build_model


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path next to ``path``; move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix or ".tmp",
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"missing file: {path}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); delete it and rerun") from None


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def torch_save(obj, path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


# ---------------------------------------------------------------- checkpoints

def save_model(model: torch.nn.Module, path, meta: dict) -> None:
    """Write ``model``'s state dict to ``path`` and ``meta`` (with the model spec) next to it
    as ``<stem>.json``."""
    spec: ModelSpec = model.spec
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch_save(state, path)
    write_json(meta_path(path), {"spec": spec.to_dict(), **meta})


def meta_path(path) -> Path:
    return Path(path).with_suffix(".json")


class CheckpointError(ValueError):
    pass


def load_model(path, device="cpu", spec: ModelSpec | None = None) -> tuple[torch.nn.Module, dict]:
    """Rebuild a model from ``path`` and its JSON metadata; returns (model in eval mode, meta).

    A checkpoint that does not match the architecture recorded in (or passed as) the spec
    raises :class:`CheckpointError` naming the file and the mismatching keys.
    """
    path = Path(path)
    meta = read_json(meta_path(path)) if meta_path(path).exists() else {}
    if spec is None:
        if "spec" not in meta:
            raise CheckpointError(f"{path}: no metadata file {meta_path(path).name} with a model spec")
        spec = ModelSpec.from_dict(meta["spec"])
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"missing checkpoint: {path}") from None
    except Exception as e:  # truncated or foreign file
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, found {type(state).__name__}")
    model = build_model(spec)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path} does not fit a {spec.arch} ({spec.variant}, {spec.num_classes} classes): "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shapes {wrong[:5]}"
        )
    model.load_state_dict(state)
    return model.to(device).eval(), meta


# ---------------------------------------------------------------- devices and seeds

def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit device that is absent is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"config device={name!r} but CUDA is not available; use 'auto' or 'cpu'")
    return dev


def seed_everything(seed: int) -> torch.Generator:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- provenance

_PACKAGES = ("torch", "torchvision", "numpy", "snakemake", "captum", "pandas", "pyarrow",
             "scikit-image", "pytorch-msssim", "xaisec")


def git_commit(cwd=None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=cwd, capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def code_hash(root: str | os.PathLike | None = None) -> str:
    """sha256 over the package's Python sources: changes whenever lib/ changes."""
    root = Path(root or Path(__file__).parent)
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def provenance(config: dict | None = None, device=None, seeds=None, extra: dict | None = None) -> dict:
    """What produced a result: resolved config, package versions, git commit, device, seeds."""
    versions = {}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    dev = torch.device(device) if device is not None else None
    rec = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(Path(__file__).resolve().parent),
        "code_hash": code_hash(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "device": str(dev) if dev is not None else None,
        "device_name": (torch.cuda.get_device_name(dev) if dev is not None and dev.type == "cuda"
                        else platform.processor() or platform.machine()),
        "torch_threads": torch.get_num_threads(),
        "seeds": seeds,
        "config": config,
    }
    if extra:
        rec.update(extra)
    return rec


# ---------------------------------------------------------------- resumable loops

def save_resume(path, fingerprint: str, epoch: int, rows: list, model, optimizer,
                scheduler=None, generator: torch.Generator | None = None, **extra) -> None:
    """Everything a training loop needs to continue after ``epoch`` (written atomically)."""
    torch_save({"fingerprint": fingerprint, "epoch": epoch, "rows": rows,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "generator": generator.get_state() if generator is not None else None,
                "torch_rng": torch.get_rng_state(), **extra}, path)


def load_resume(path, fingerprint: str, model, optimizer, scheduler=None,
                generator: torch.Generator | None = None) -> tuple[int, list, dict]:
    """Restore a loop saved by :func:`save_resume` with the same fingerprint.

    Returns (last finished epoch, metric rows, extra entries); (0, [], {}) when there is
    nothing to resume. A file from other settings or an unreadable one is ignored (it only
    held progress) with a message.
    """
    path = Path(path)
    if not path.exists():
        return 0, [], {}
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
        if st.get("fingerprint") != fingerprint:
            print(f"[xaisec] {path} is from other settings: starting afresh", file=sys.stderr)
            return 0, [], {}
        model.load_state_dict(st["model"])
        optimizer.load_state_dict(st["optimizer"])
        if scheduler is not None and st["scheduler"] is not None:
            scheduler.load_state_dict(st["scheduler"])
        if generator is not None and st["generator"] is not None:
            generator.set_state(st["generator"])
        torch.set_rng_state(st["torch_rng"])
    except Exception as e:  # noqa: BLE001 - a corrupt resume file only costs its progress
        print(f"[xaisec] ignoring unreadable {path}: {e}", file=sys.stderr)
        return 0, [], {}
    print(f"[xaisec] resuming {path.parent} after epoch {st['epoch']}", file=sys.stderr)
    known = {"fingerprint", "epoch", "rows", "model", "optimizer", "scheduler", "generator",
             "torch_rng"}
    return st["epoch"], st["rows"], {k: v for k, v in st.items() if k not in known}
