"""Files at rest: atomic writes, checkpoints with metadata, provenance records.

Every output is written to a temporary file in the same directory and moved into place with
``os.replace``, so a run killed at any moment leaves either the old file or the new one, never
half of one. Checkpoints are plain state dicts, loaded with ``weights_only=True``.
"""
from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import torch

from xaisec.models.classifiers import ModelSpec, build_model


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path next to ``path``; move it into place only if the block succeeds.

    The one atomic-write helper of the project: the file is synced to disk and given the
    permissions a plain ``open(path, "w")`` would (``mkstemp`` creates it 0600) before
    ``os.replace`` puts it in place, so a run killed at any moment leaves the old file or the
    new one, never part of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix or ".tmp",
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary folder next to ``path``; it replaces ``path`` (removed first) only if
    the block succeeds, so a killed run leaves the old folder or the complete new one (the
    files inside are written with :func:`atomic_path` or any writer)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def json_dumps(obj) -> str:
    """``obj`` as compact JSON (numpy scalars and arrays, paths and tuples allowed)."""
    return json.dumps(obj, sort_keys=False, default=_json_default)


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


# ---------------------------------------------------------------- Parquet

# Every Parquet file the workflow writes goes through write_parquet and is read back through
# read_parquet_table / read_parquet / read_parquet_metadata. Two layers catch damaged bytes:
# * CRC32 page checksums (write_page_checksum) cover the data pages, verified on every read;
# * they do not cover the page headers nor the footer (schema, key-value metadata, offsets,
#   encodings), where one flipped bit can silently change values or metadata. So write_parquet
#   also stores a sha256 per column (type and values, computed from the Arrow data, so
#   independent of chunking and encoding) and one over the schema key-value metadata, as the
#   schema metadata entry ``xaisec.digest``; reads recompute the digests of what they return.
# Files without the entry (written before it existed, or by other tools) are read with page
# checksums only.
PARQUET_DIGEST_KEY = b"xaisec.digest"
_DIGEST_UNHASHED = (PARQUET_DIGEST_KEY, b"ARROW:schema")  # ARROW:schema enters via the types


class CorruptFileError(ValueError):
    """A file whose bytes are damaged: unreadable, or failing a checksum or content digest."""


def _corrupt(path, what: str) -> CorruptFileError:
    return CorruptFileError(f"{path}: {what}; the file is truncated or corrupt: delete it and "
                            f"rerun the rule that wrote it")


def _canonical_type(t) -> str:
    """The Arrow type as far as values go: dictionary-encoded as its values, 32/64-bit offsets
    and views alike (a round trip through Parquet may change those)."""
    import pyarrow as pa

    ty = pa.types
    if ty.is_dictionary(t):
        return _canonical_type(t.value_type)
    if ty.is_string(t) or ty.is_large_string(t) or getattr(ty, "is_string_view", bool)(t):
        return "string"
    if ty.is_binary(t) or ty.is_large_binary(t) or getattr(ty, "is_binary_view", bool)(t):
        return "binary"
    if ty.is_list(t) or ty.is_large_list(t) or getattr(ty, "is_list_view", bool)(t) \
            or getattr(ty, "is_large_list_view", bool)(t):
        return f"list<{_canonical_type(t.value_type)}>"
    if ty.is_fixed_size_list(t):
        return f"fixed_size_list<{_canonical_type(t.value_type)}>[{t.list_size}]"
    if ty.is_struct(t):
        return "struct<" + ", ".join(f"{json.dumps(t.field(i).name)}: "
                                     f"{_canonical_type(t.field(i).type)}"
                                     for i in range(t.num_fields)) + ">"
    return str(t)


class _ColumnDigest:
    """sha256 of a column's canonical type and values, fed chunk by chunk: the same for any
    chunking, offsets, dictionary encoding or offset width. Fixed-width values are hashed as
    their bytes without a copy (100 MB of float32 maps take ~0.05 s)."""

    def __init__(self, type_):
        self.type = _canonical_type(type_)
        self.n = 0
        self.nulls = hashlib.sha256()  # positions of the nulls
        self.values = hashlib.sha256()
        self.lengths = hashlib.sha256()  # per-element lengths of variable-size values
        self.children: list[_ColumnDigest] | None = None

    def update(self, arr) -> None:
        import numpy as np
        import pyarrow as pa

        ty = pa.types
        t = arr.type
        if ty.is_dictionary(t):
            arr, t = arr.dictionary_decode(), t.value_type
        if getattr(ty, "is_string_view", bool)(t):
            arr, t = arr.cast(pa.large_string()), pa.large_string()
        elif getattr(ty, "is_binary_view", bool)(t):
            arr, t = arr.cast(pa.large_binary()), pa.large_binary()
        elif getattr(ty, "is_list_view", bool)(t) or getattr(ty, "is_large_list_view", bool)(t):
            arr = arr.cast(pa.large_list(t.value_field))
            t = arr.type
        valid = None
        if arr.null_count:
            valid = arr.is_valid().to_numpy(zero_copy_only=False)
            self.nulls.update((np.flatnonzero(~valid) + self.n).astype("<i8").tobytes())
        if ty.is_null(t):
            pass
        elif ty.is_boolean(t):
            self.values.update(arr.fill_null(False).to_numpy(zero_copy_only=False)
                               .astype(np.uint8).tobytes())
        elif ty.is_string(t) or ty.is_large_string(t) or ty.is_binary(t) or ty.is_large_binary(t):
            if valid is not None:
                arr = arr.fill_null("" if ty.is_string(t) or ty.is_large_string(t) else b"")
            large = ty.is_large_string(t) or ty.is_large_binary(t)
            bufs = arr.buffers()
            if len(arr):
                offs = np.frombuffer(bufs[1], "<i8" if large else "<i4")[
                    arr.offset:arr.offset + len(arr) + 1]
                self.lengths.update(np.diff(offs).astype("<i8").tobytes())
                if bufs[2] is not None and offs[-1] > offs[0]:
                    self.values.update(memoryview(bufs[2])[int(offs[0]):int(offs[-1])])
        elif ty.is_list(t) or ty.is_large_list(t) or ty.is_fixed_size_list(t) or ty.is_struct(t):
            if ty.is_struct(t):
                children = arr.flatten()
            else:  # flatten() honours the offset and drops the values under null slots
                children = [arr.flatten()]
                if not ty.is_fixed_size_list(t):
                    self.lengths.update(arr.value_lengths().fill_null(0)
                                        .to_numpy(zero_copy_only=False).astype("<i8").tobytes())
            if self.children is None:
                self.children = [_ColumnDigest(c.type) for c in children]
            for d, c in zip(self.children, children):
                d.update(c)
        else:
            try:
                width = t.bit_width
            except ValueError:
                width = 0
            buf = arr.buffers()[1] if len(arr) else None
            if width and width % 8 == 0 and buf is not None:
                w = width // 8
                v = np.frombuffer(buf, np.uint8)[arr.offset * w:(arr.offset + len(arr)) * w]
                if valid is not None:  # the bytes under a null are undefined
                    v = v.reshape(len(arr), w).copy()
                    v[~valid] = 0
                self.values.update(v)
            else:  # anything else (maps, unions, ...): through Python, slow but exact
                for x in arr.to_pylist():
                    r = repr(x).encode()
                    self.values.update(len(r).to_bytes(8, "little") + r)
        self.n += len(arr)

    def hexdigest(self) -> str:
        h = hashlib.sha256(f"{self.type}|{self.n}|".encode())
        for part in (self.nulls, self.values, self.lengths):
            h.update(part.digest())
        for child in self.children or []:
            h.update(child.hexdigest().encode())
        return h.hexdigest()


def _column_digest(col) -> str:
    d = _ColumnDigest(col.type)
    for chunk in getattr(col, "chunks", [col]):
        d.update(chunk)
    return d.hexdigest()


def _metadata_digest(schema) -> str:
    h = hashlib.sha256()
    for k, v in sorted((schema.metadata or {}).items()):
        if k not in _DIGEST_UNHASHED:
            h.update(len(k).to_bytes(8, "little") + k + len(v).to_bytes(8, "little") + v)
    return h.hexdigest()


def _stored_digest(path, schema) -> dict | None:
    raw = (schema.metadata or {}).get(PARQUET_DIGEST_KEY)
    if raw is None:
        return None
    try:
        d = json.loads(raw)
        if not (isinstance(d, dict) and isinstance(d["columns"], dict)
                and isinstance(d["metadata"], str) and isinstance(d["rows"], int)):
            raise ValueError("malformed")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise _corrupt(path, "its content digest is unreadable") from None
    if _metadata_digest(schema) != d["metadata"]:
        raise _corrupt(path, "its schema metadata does not match its digest")
    unknown = [n for n in schema.names if n not in d["columns"]]
    if unknown:
        raise _corrupt(path, f"columns {unknown[:5]} are not in its content digest")
    return d


def write_parquet(data, path, *, preserve_index: bool = False, **kw) -> None:
    """Write a DataFrame or Arrow table to ``path`` atomically, with CRC32 page checksums and
    per-column content digests (see above). ``kw`` go to ``pyarrow.parquet.write_table``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = data if isinstance(data, pa.Table) else \
        pa.Table.from_pandas(data, preserve_index=preserve_index)
    md = {k: v for k, v in (table.schema.metadata or {}).items() if k != PARQUET_DIGEST_KEY}
    table = table.replace_schema_metadata(md)
    digest = {"algorithm": "sha256", "rows": table.num_rows,
              "metadata": _metadata_digest(table.schema),
              "columns": {n: _column_digest(table.column(i))
                          for i, n in enumerate(table.column_names)}}
    table = table.replace_schema_metadata({**md, PARQUET_DIGEST_KEY: json.dumps(digest).encode()})
    kw.pop("write_page_checksum", None)
    with atomic_path(path, suffix=".tmp") as tmp:
        pq.write_table(table, tmp, write_page_checksum=True, **kw)


def _parquet_error(path, e: Exception, columns=None) -> Exception:
    if isinstance(e, (PermissionError, CorruptFileError)):
        return e
    if columns is not None:  # a column that is not there is the caller's mistake, not damage
        try:
            import pyarrow.parquet as pq

            names = pq.read_schema(path).names
            missing = [c for c in ([columns] if isinstance(columns, str) else columns)
                       if c not in names]
            if missing:
                return KeyError(f"{path}: no columns {missing}; available: {names}")
        except Exception:  # noqa: BLE001 - the footer itself is damaged: report that
            pass
    return _corrupt(path, f"cannot read it as Parquet ({type(e).__name__}: {e})")


def read_parquet_table(path, columns=None, *, use_threads: bool = True):
    """Read ``path`` (all columns, or those named) as an Arrow table, verifying the page
    checksums and the content digests of the columns read. A damaged file raises
    :class:`CorruptFileError` (a ``ValueError``) naming it; a missing one
    ``FileNotFoundError``."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"missing file: {path}")
    try:
        table = pq.read_table(path, columns=columns, use_threads=use_threads,
                              page_checksum_verification=True)
    except Exception as e:  # noqa: BLE001 - whatever a damaged file makes pyarrow raise
        raise _parquet_error(path, e, columns) from None
    try:
        _verify_table(path, table, whole=columns is None)
    except CorruptFileError:
        raise
    except Exception as e:  # noqa: BLE001 - e.g. a column name that is no longer UTF-8
        raise _corrupt(path, f"unreadable schema ({type(e).__name__}: {e})") from None
    return table


def _verify_table(path, table, whole: bool) -> None:
    digest = _stored_digest(path, table.schema)
    if digest is None:
        return
    if table.num_rows != digest["rows"]:
        raise _corrupt(path, f"{table.num_rows} rows read, {digest['rows']} written")
    if whole and len(digest["columns"]) != table.num_columns:
        raise _corrupt(path, f"{table.num_columns} columns read, {len(digest['columns'])} written")
    for i, name in enumerate(table.column_names):
        if _column_digest(table.column(i)) != digest["columns"][name]:
            raise _corrupt(path, f"column {name!r} does not match its content digest")


def read_parquet(path, columns=None):
    """:func:`read_parquet_table` as a pandas DataFrame (what ``pd.read_parquet`` returns)."""
    table = read_parquet_table(path, columns)
    try:
        return table.to_pandas()
    except Exception as e:  # noqa: BLE001 - pandas metadata of a file without digest
        raise _corrupt(path, f"cannot convert it to a DataFrame ({type(e).__name__}: {e})") \
            from None


def read_parquet_metadata(path):
    """The footer of ``path`` (``pyarrow.parquet.FileMetaData``: ``num_rows``,
    ``schema.to_arrow_schema()`` with the key-value metadata, ...) without reading any data,
    its key-value metadata, column names and row count checked against the stored digest."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"missing file: {path}")
    try:
        with pq.ParquetFile(path) as pf:
            md = pf.metadata
        schema = md.schema.to_arrow_schema()
        digest = _stored_digest(path, schema)
    except Exception as e:  # noqa: BLE001 - whatever a damaged footer makes pyarrow raise
        raise _parquet_error(path, e) from None
    if digest is not None and (md.num_rows != digest["rows"]
                               or len(schema.names) != len(digest["columns"])):
        raise _corrupt(path, "its row or column count does not match its digest")
    return md


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
    nothing to resume. A file from other settings, an unreadable one, or one whose model,
    optimizer or scheduler state does not fit is ignored (it only held progress) with a
    message, and then ``model``, ``optimizer``, ``scheduler``, ``generator`` and the torch RNG
    are left exactly as they were: the states are checked before anything is loaded, and
    whatever was loaded is rolled back if a later part fails.
    """
    path = Path(path)
    if not path.exists():
        return 0, [], {}
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(st, dict):
            raise ValueError(f"expected a dict, found {type(st).__name__}")
    except Exception as e:  # noqa: BLE001 - a corrupt resume file only costs its progress
        print(f"[xaisec] ignoring unreadable {path}: {e}", file=sys.stderr)
        return 0, [], {}
    if st.get("fingerprint") != fingerprint:
        print(f"[xaisec] {path} is from other settings: starting afresh", file=sys.stderr)
        return 0, [], {}
    problem = _resume_mismatch(st, model, optimizer, scheduler)
    if problem:
        print(f"[xaisec] ignoring {path}: {problem}; starting afresh", file=sys.stderr)
        return 0, [], {}
    before = _loop_state(model, optimizer, scheduler, generator)
    try:
        model.load_state_dict(st["model"])
        optimizer.load_state_dict(st["optimizer"])
        if scheduler is not None and st["scheduler"] is not None:
            scheduler.load_state_dict(st["scheduler"])
        if generator is not None and st["generator"] is not None:
            generator.set_state(st["generator"])
        torch.set_rng_state(st["torch_rng"])
    except Exception as e:  # noqa: BLE001 - a corrupt resume file only costs its progress
        _restore_loop_state(before, model, optimizer, scheduler, generator)
        print(f"[xaisec] ignoring unreadable {path}: {e}", file=sys.stderr)
        return 0, [], {}
    print(f"[xaisec] resuming {path.parent} after epoch {st['epoch']}", file=sys.stderr)
    known = {"fingerprint", "epoch", "rows", "model", "optimizer", "scheduler", "generator",
             "torch_rng"}
    return st["epoch"], st["rows"], {k: v for k, v in st.items() if k not in known}


def _resume_mismatch(st: dict, model, optimizer, scheduler) -> str | None:
    """Why the states in a resume file do not fit the loop's objects (None if they do).
    ``load_state_dict`` alone would load a model's matching tensors before complaining, and
    takes optimizer state of the wrong shapes without a word (failing at the next step)."""
    missing = [k for k in ("epoch", "rows", "model", "optimizer", "torch_rng") if k not in st]
    if missing:
        return f"no entries {missing}"
    if not isinstance(st["epoch"], int) or not isinstance(st["rows"], list):
        return "malformed epoch or rows"
    saved, expected = st["model"], model.state_dict()
    if not isinstance(saved, dict):
        return "malformed model state"
    wrong = sorted(k for k in set(saved) & set(expected)
                   if not isinstance(saved[k], torch.Tensor) or saved[k].shape != expected[k].shape)
    if set(saved) != set(expected) or wrong:
        return (f"its model state does not fit (missing {sorted(set(expected) - set(saved))[:5]}, "
                f"unexpected {sorted(set(saved) - set(expected))[:5]}, wrong shapes {wrong[:5]})")
    opt = st["optimizer"]
    try:
        groups, state = opt["param_groups"], opt["state"]
        if len(groups) != len(optimizer.param_groups) or any(
                len(g["params"]) != len(cur["params"])
                for g, cur in zip(groups, optimizer.param_groups)):
            return "its optimizer state is for another parameter list"
        for g, cur in zip(groups, optimizer.param_groups):
            for pid, param in zip(g["params"], cur["params"]):
                for name, v in state.get(pid, {}).items():
                    if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape != param.shape:
                        return (f"its optimizer state does not fit ({name!r} of shape "
                                f"{tuple(v.shape)} for a parameter of shape {tuple(param.shape)})")
    except (KeyError, TypeError, AttributeError) as e:
        return f"malformed optimizer state ({type(e).__name__}: {e})"
    sched = st.get("scheduler")
    if scheduler is not None and sched is not None and (
            not isinstance(sched, dict) or set(sched) != set(scheduler.state_dict())):
        return "its scheduler state is of another scheduler"
    return None


def _loop_state(model, optimizer, scheduler, generator) -> dict:
    return {"model": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "optimizer": copy.deepcopy(optimizer.state_dict()),
            "scheduler": copy.deepcopy(scheduler.state_dict()) if scheduler is not None else None,
            "generator": generator.get_state() if generator is not None else None,
            "torch_rng": torch.get_rng_state()}


def _restore_loop_state(s: dict, model, optimizer, scheduler, generator) -> None:
    model.load_state_dict(s["model"])
    optimizer.load_state_dict(s["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(s["scheduler"])
    if generator is not None:
        generator.set_state(s["generator"])
    torch.set_rng_state(s["torch_rng"])


# ---------------------------------------------------------------- one writer per output

class OutputLocked(RuntimeError):
    """Another process is already writing this output directory."""


LOCK_NAME = ".lock"


@contextlib.contextmanager
def output_lock(out_dir):
    """Hold an exclusive advisory lock (``flock``) on ``out_dir/.lock`` (beside ``resume.pt``)
    for the block: a second run that tries to write the same output, in this process or any
    other on this machine, raises :class:`OutputLocked` at once instead of resuming the first
    one's ``resume.pt`` and training the same output twice. Snakemake's own lock does not
    prevent that: any run in the working directory that finishes removes it. The lock goes
    with the process (a killed run leaves no stale lock); the file is removed on release."""
    import fcntl

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = out_dir / LOCK_NAME
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            except OSError:
                holder = "unknown"
            os.close(fd)
            raise OutputLocked(
                f"another run is writing {out_dir} (lock {lock} held by pid {holder}); wait for "
                f"it to finish, or stop it, then rerun (two runs in one working directory: "
                f"Snakemake's lock is gone once either finishes)") from None
        except BaseException:
            os.close(fd)
            raise
        try:  # the file we locked may have been removed by its previous holder meanwhile
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} on {platform.node()}\n".encode(), 0)
        yield lock
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)  # while still holding it: see the inode check above
        os.close(fd)


def holds_output_lock(fn):
    """Decorator: hold :func:`output_lock` on the call's ``out_dir`` argument for the whole
    call (a training or fine-tuning loop, from reading ``resume.pt`` to writing the model)."""
    import functools
    import inspect

    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def locked(*args, **kwargs):
        with output_lock(sig.bind(*args, **kwargs).arguments["out_dir"]):
            return fn(*args, **kwargs)

    return locked
