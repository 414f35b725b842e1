"""The explanation cache: one Parquet file per (model, mode/defense, input variant, explainer)
over an evaluation set, one row per sample. Every table and figure reads explanations from
these files; nothing downstream recomputes them.

Layout of a file
----------------
* ``map``: the explanation, flattened to ``C*H*W`` values per row, stored as a non-null
  ``fixed_size_list<float32>`` (or ``<float16>``) column, Parquet ``BYTE_STREAM_SPLIT`` encoded
  then compressed (zstd by default).
* ``sample`` (int64, index of the image in the test split), ``label`` (int64, true label),
  ``pred`` (int64, predicted class), ``confidence`` (float32, softmax probability of ``pred``),
  ``target`` (int64, the class that was explained), then any ``extra`` per-sample columns.
* Schema metadata: ``xaisec.format`` (format version), ``xaisec.map_shape`` (JSON ``[C, H, W]``),
  ``xaisec.map_dtype`` (``"float32"``/``"float16"``) and ``xaisec.meta`` (JSON of the constants:
  model id, dataset, arch, mode/defense, input variant, explainer, batch size, seed, ...).

Reading rebuilds ``(N, C, H, W)`` from the flat values buffer of the list column with one
reshape, no per-row Python. By default the arrays returned are read-only views of Arrow memory
(zero copy where the column comes back in one chunk); pass ``copy=True`` for writable arrays.

Precision of ``dtype="float16"``
--------------------------------
float16 halves the size of the map column but keeps an 11-bit significand: values are rounded
to a relative error of at most 2**-11 (about 4.9e-4, i.e. ~3 significant decimal digits) in
the normal range [6.1e-5, 65504]; smaller magnitudes become subnormal with an absolute error of
up to 2**-25 (about 3e-8), and magnitudes below about 3e-8 round to zero. Values above 65504
cannot be stored (``write_explanations`` raises rather than write ``inf``). That is ample for
maps normalised to [0, 1] (CAMs, normalised saliency) and for rank-based metrics, but raw,
unnormalised gradients of well-trained models are often ~1e-6 to 1e-8 and lose most of
their digits: keep those in float32. Reading always returns float32.

Files are written atomically (temporary file + rename, :func:`xaisec.io.atomic_path`), so a job
killed mid-write leaves either no file or the previous one, with CRC32 page checksums and
per-column content digests (:func:`xaisec.io.write_parquet`): every read verifies those of the
columns it reads (footer-only reads: the schema metadata), so a damaged file raises
:class:`CacheError` instead of returning changed values.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from xaisec.io import CorruptFileError, read_parquet_metadata, read_parquet_table, write_parquet

FORMAT_VERSION = 1
KEY_FORMAT = b"xaisec.format"
KEY_SHAPE = b"xaisec.map_shape"
KEY_DTYPE = b"xaisec.map_dtype"
KEY_META = b"xaisec.meta"

MAP_COLUMN = "map"
# the per-sample columns every file has, with the dtype they are stored and read as
CORE_COLUMNS: dict[str, np.dtype] = {
    "sample": np.dtype(np.int64),
    "label": np.dtype(np.int64),
    "pred": np.dtype(np.int64),
    "confidence": np.dtype(np.float32),
    "target": np.dtype(np.int64),
}
_MAP_DTYPES = {"float32": (np.float32, pa.float32()), "float16": (np.float16, pa.float16())}
_COMPRESSIONS = {"zstd", "snappy", "lz4", "gzip", "brotli", "none"}
_ROW_GROUP_BYTES = 64 * 2**20  # aim for row groups of at most ~64 MiB of map data
_FLOAT16_MAX = float(np.finfo(np.float16).max)


class CacheError(ValueError):
    """A cache file that cannot be written or read as an explanation set."""


@dataclass
class ExplanationSet:
    """Explanations of N samples under one (model, mode/defense, input variant, explainer).

    Fields left ``None`` were not read (see :func:`read_explanations`); a set to be written
    must have all of them.
    """

    maps: np.ndarray | None  # float32 (N, C, H, W); C=1 for CAMs, 3 for gradients
    sample: np.ndarray | None  # int64 index of the image in the test split
    label: np.ndarray | None  # int64 true label
    pred: np.ndarray | None  # int64 predicted class
    confidence: np.ndarray | None  # float32 softmax probability of pred
    target: np.ndarray | None  # int64 class that was explained
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # further per-sample columns
    meta: dict = field(default_factory=dict)  # constants, JSON-serialisable

    def __post_init__(self):
        if self.maps is not None:
            self.maps = np.asarray(self.maps)
            if self.maps.ndim != 4:
                raise CacheError(f"column 'map': maps must be 4-D (N, C, H, W), "
                                 f"got shape {self.maps.shape}")
        for name in CORE_COLUMNS:
            v = getattr(self, name)
            if v is not None:
                setattr(self, name, np.asarray(v))
        self.extra = {str(k): np.asarray(v) for k, v in (self.extra or {}).items()}
        self.meta = dict(self.meta or {})
        self._check_lengths()

    # ---------------------------------------------------------------- helpers

    def columns(self) -> dict[str, np.ndarray]:
        """The per-sample columns present (core then extra), without the maps."""
        cols = {n: getattr(self, n) for n in CORE_COLUMNS if getattr(self, n) is not None}
        cols.update(self.extra)
        return cols

    @property
    def map_shape(self) -> tuple[int, int, int] | None:
        return None if self.maps is None else tuple(int(s) for s in self.maps.shape[1:])

    def __len__(self) -> int:
        if self.maps is not None:
            return int(self.maps.shape[0])
        cols = self.columns()
        return int(len(next(iter(cols.values())))) if cols else 0

    def _check_lengths(self) -> None:
        lengths = {}
        if self.maps is not None:
            lengths[MAP_COLUMN] = self.maps.shape[0]
        for name, v in self.columns().items():
            if v.ndim != 1:
                raise CacheError(f"column {name!r}: per-sample columns must be 1-D, "
                                 f"got shape {v.shape}")
            lengths[name] = v.shape[0]
        if len(set(lengths.values())) > 1:
            raise CacheError(f"columns have mismatched lengths: {lengths}")


# ---------------------------------------------------------------- validation

def _as_int64(name: str, v: np.ndarray) -> np.ndarray:
    if v.dtype.kind in "iub":
        return v.astype(np.int64, copy=False)
    if v.dtype.kind == "f" and np.all(np.isfinite(v)) and np.all(v == np.round(v)):
        return v.astype(np.int64)
    raise CacheError(f"column {name!r}: expected integers, got dtype {v.dtype}")


def _check_name(name: str) -> None:
    if not name or name == MAP_COLUMN or name in CORE_COLUMNS:
        raise CacheError(f"extra column {name!r} clashes with a built-in column "
                         f"({MAP_COLUMN!r}, {', '.join(CORE_COLUMNS)})")


def _meta_json(meta: dict) -> str:
    for k in meta:
        if not isinstance(k, str):
            raise CacheError(f"meta keys must be strings, got {k!r}")
    try:
        return json.dumps(meta, sort_keys=True, allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as e:
        raise CacheError(f"meta is not JSON-serialisable: {e}") from None


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (Path, os.PathLike)):
        return os.fspath(o)
    if isinstance(o, (tuple, set, frozenset)):
        return list(o)
    raise TypeError(f"{type(o).__name__} {o!r}")


def _prepare(es: ExplanationSet, dtype: str) -> tuple[pa.Table, int]:
    """Validate ``es`` and build the Arrow table (zero copy for float32 maps)."""
    if es.maps is None:
        raise CacheError("cannot write an explanation set without maps")
    missing = [n for n in CORE_COLUMNS if getattr(es, n) is None]
    if missing:
        raise CacheError(f"cannot write an explanation set without columns {missing}")
    es._check_lengths()
    np_dtype, pa_dtype = _MAP_DTYPES[dtype]
    maps = es.maps
    if maps.dtype.kind != "f":
        raise CacheError(f"column 'map': maps must be floating point, got {maps.dtype}")
    n, c, h, w = maps.shape
    if min(c, h, w) < 1:
        raise CacheError(f"column 'map': empty map shape {maps.shape[1:]}")
    if not np.isfinite(maps).all():
        bad = np.flatnonzero(~np.isfinite(maps.reshape(n, -1)).all(axis=1))
        raise CacheError(f"column 'map': {bad.size} map(s) contain NaN or inf "
                         f"(rows {bad[:5].tolist()}{'...' if bad.size > 5 else ''})")
    if dtype == "float16":
        peak = float(np.abs(maps).max()) if maps.size else 0.0
        if peak > _FLOAT16_MAX:
            raise CacheError(f"column 'map': |value| up to {peak:.3g} exceeds the float16 range "
                             f"({_FLOAT16_MAX:g}); normalise the maps or write float32")
    flat = np.ascontiguousarray(maps, dtype=np_dtype).reshape(-1)

    elem = pa.field("element", pa_dtype, nullable=False)
    map_type = pa.list_(elem, c * h * w)
    arrays = [pa.FixedSizeListArray.from_arrays(pa.array(flat, type=pa_dtype), type=map_type)]
    fields_ = [pa.field(MAP_COLUMN, map_type, nullable=False)]
    for name, dt in CORE_COLUMNS.items():
        v = getattr(es, name)
        v = _as_int64(name, v) if dt.kind == "i" else v.astype(dt, copy=False)
        if name == "confidence" and not np.isfinite(v).all():
            raise CacheError("column 'confidence' contains NaN or inf")
        arrays.append(pa.array(v, type=pa.from_numpy_dtype(dt)))
        fields_.append(pa.field(name, arrays[-1].type, nullable=False))
    for name, v in es.extra.items():
        _check_name(name)
        try:
            arr = pa.array(v)
        except (pa.ArrowException, TypeError, ValueError) as e:
            raise CacheError(f"extra column {name!r} (dtype {v.dtype}) cannot be stored: {e}") from None
        arrays.append(arr)
        fields_.append(pa.field(name, arr.type))
    clash = sorted(set(es.meta) & ({MAP_COLUMN, *CORE_COLUMNS} | set(es.extra)))
    if clash:
        raise CacheError(f"meta keys {clash} clash with column names")
    metadata = {
        KEY_FORMAT: str(FORMAT_VERSION).encode(),
        KEY_SHAPE: json.dumps([c, h, w]).encode(),
        KEY_DTYPE: dtype.encode(),
        KEY_META: _meta_json(es.meta).encode(),
    }
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields_, metadata=metadata))
    row_bytes = c * h * w * np.dtype(np_dtype).itemsize
    return table, max(1, min(max(n, 1), _ROW_GROUP_BYTES // row_bytes))


# ---------------------------------------------------------------- writing

def write_explanations(path, es: ExplanationSet, *, dtype: str = "float32",
                       compression: str = "zstd", compression_level: int | None = None) -> None:
    """Write ``es`` to the Parquet file ``path`` atomically.

    ``dtype`` is the storage type of the maps: ``"float32"`` (exact) or ``"float16"`` (half the
    size; see the module docstring for the precision lost). ``compression`` is any Parquet
    codec pyarrow knows (``zstd``, ``snappy``, ``lz4``, ``gzip``, ``brotli``, ``none``).
    Raises :class:`CacheError` (a ``ValueError``) naming the column for bad shapes, mismatched
    lengths and non-finite maps; nothing is written then.
    """
    if dtype not in _MAP_DTYPES:
        raise CacheError(f"dtype must be one of {sorted(_MAP_DTYPES)}, got {dtype!r}")
    if str(compression).lower() not in _COMPRESSIONS:
        raise CacheError(f"compression must be one of {sorted(_COMPRESSIONS)}, got {compression!r}")
    table, row_group = _prepare(es, dtype)
    small = [f.name for f in table.schema if f.name != MAP_COLUMN]
    # atomic; CRC32 page checksums and per-column content digests (xaisec.io.write_parquet)
    write_parquet(
        table, path,
        row_group_size=row_group,
        compression=compression,
        compression_level=compression_level,
        use_dictionary=small,  # never dictionary-encode the float maps
        write_statistics=small,  # min/max of millions of map values is wasted work
        column_encoding={f"{MAP_COLUMN}.list.element": "BYTE_STREAM_SPLIT"},
        use_compliant_nested_type=True,  # makes the leaf path "map.list.element"
    )


# ---------------------------------------------------------------- reading

def _open_error(path: Path, e: Exception) -> CacheError:
    if isinstance(e, CorruptFileError):  # already names the file and says what to do
        return CacheError(str(e))
    return CacheError(f"{path}: cannot read the explanation cache ({type(e).__name__}: {e}); "
                      f"the file is truncated or corrupt: delete it and rerun")


def _schema(path: Path) -> pa.Schema:
    if not path.exists():
        raise FileNotFoundError(f"missing explanation cache: {path}")
    try:
        return read_parquet_metadata(path).schema.to_arrow_schema()
    except (CorruptFileError, pa.ArrowException, OSError) as e:
        raise _open_error(path, e) from None


def _header(path: Path, schema: pa.Schema) -> dict:
    md = schema.metadata or {}
    if KEY_META not in md or KEY_SHAPE not in md or KEY_FORMAT not in md:
        raise CacheError(f"{path} is not an xaisec explanation cache (no {KEY_META.decode()} / "
                         f"{KEY_SHAPE.decode()} schema metadata)")
    try:
        version = int(md[KEY_FORMAT])
        shape = tuple(int(s) for s in json.loads(md[KEY_SHAPE]))
        meta = json.loads(md[KEY_META])
        dtype = md.get(KEY_DTYPE, b"float32").decode()
    except (ValueError, TypeError) as e:
        raise CacheError(f"{path}: unreadable xaisec schema metadata ({e})") from None
    if version > FORMAT_VERSION:
        raise CacheError(f"{path}: cache format {version} is newer than this xaisec "
                         f"(reads up to {FORMAT_VERSION}); update xaisec")
    if len(shape) != 3 or dtype not in _MAP_DTYPES:
        raise CacheError(f"{path}: bad xaisec schema metadata (shape {shape}, dtype {dtype!r})")
    names = set(schema.names)
    lacking = [n for n in (MAP_COLUMN, *CORE_COLUMNS) if n not in names]
    if lacking:
        raise CacheError(f"{path} is not an xaisec explanation cache (no columns {lacking})")
    return {"format_version": version, "map_shape": shape, "map_dtype": dtype, "meta": meta}


def read_meta(path) -> dict:
    """The constants stored with the set (model id, dataset, explainer, ...), from the footer only."""
    path = Path(path)
    return _header(path, _schema(path))["meta"]


def read_info(path) -> dict:
    """Footer-only summary: ``meta``, ``map_shape``, ``map_dtype``, ``format_version``,
    ``num_rows``, ``columns`` (per-sample) and ``size_bytes``."""
    path = Path(path)
    schema = _schema(path)
    info = _header(path, schema)
    try:
        info["num_rows"] = read_parquet_metadata(path).num_rows
    except (CorruptFileError, pa.ArrowException, OSError) as e:
        raise _open_error(path, e) from None
    info["columns"] = [n for n in schema.names if n != MAP_COLUMN]
    info["size_bytes"] = path.stat().st_size
    return info


def _to_numpy(col: pa.ChunkedArray, copy: bool) -> np.ndarray:
    """ChunkedArray -> numpy, zero copy for a single null-free numeric chunk."""
    if col.num_chunks == 1 and col.null_count == 0 and pa.types.is_primitive(col.type) \
            and not pa.types.is_boolean(col.type):
        out = col.chunk(0).to_numpy(zero_copy_only=True)
        return out.copy() if copy else out
    return col.to_numpy()  # several chunks, strings, booleans: one copy


def _maps_to_numpy(col: pa.ChunkedArray, shape: tuple[int, int, int], copy: bool) -> np.ndarray:
    if col.null_count:
        raise CacheError("column 'map' has null rows")
    parts = [chunk.flatten().to_numpy(zero_copy_only=True) for chunk in col.chunks]
    if not parts:
        flat = np.empty(0, dtype=col.type.value_type.to_pandas_dtype())
    elif len(parts) == 1:
        flat = parts[0]
    else:
        flat = np.concatenate(parts)  # one copy, no per-row work
    if flat.dtype != np.float32:
        flat = flat.astype(np.float32)  # float16 storage: always read back as float32
    elif copy and len(parts) == 1:
        flat = flat.copy()
    return flat.reshape((len(col), *shape))


def read_explanations(path, *, columns: Sequence[str] | None = None, maps: bool = True,
                      copy: bool = False) -> ExplanationSet:
    """Read an explanation set written by :func:`write_explanations`.

    ``columns`` names the per-sample columns to read (core and extra; default all);
    ``maps=False`` skips the map column, so only the small columns are read (fast). Fields not
    read are ``None`` (extra columns not read are absent). Maps come back as float32
    (N, C, H, W) whatever the storage dtype. Arrays are read-only views of Arrow memory unless
    ``copy=True``.

    A missing file raises ``FileNotFoundError``; a file that is not one of ours, or is
    truncated/corrupt, raises :class:`CacheError` (a ``ValueError``) naming the file.
    """
    path = Path(path)
    schema = _schema(path)
    header = _header(path, schema)
    available = [n for n in schema.names if n != MAP_COLUMN]
    if columns is None:
        wanted = available
    else:
        wanted = list(dict.fromkeys([columns] if isinstance(columns, str) else columns))
        unknown = [c for c in wanted if c not in available]
        if unknown:
            hint = " (use maps=True/False for the map column)" if MAP_COLUMN in unknown else ""
            raise CacheError(f"{path}: no columns {unknown}{hint}; available: {available}")
    to_read = ([MAP_COLUMN] if maps else []) + wanted
    try:
        table = read_parquet_table(path, columns=to_read)  # verifies checksums and digests
        arrays = {name: (_maps_to_numpy(table.column(name), header["map_shape"], copy)
                         if name == MAP_COLUMN else _to_numpy(table.column(name), copy))
                  for name in to_read}
    except CacheError as e:
        raise CacheError(f"{path}: {e}") from None
    except (CorruptFileError, pa.ArrowException, OSError) as e:
        raise _open_error(path, e) from None
    if not copy:  # consistent whether or not the conversion could avoid a copy
        for a in arrays.values():
            a.flags.writeable = False
    return ExplanationSet(
        maps=arrays.get(MAP_COLUMN),
        **{n: arrays.get(n) for n in CORE_COLUMNS},
        extra={n: arrays[n] for n in wanted if n not in CORE_COLUMNS},
        meta=header["meta"],
    )


# ---------------------------------------------------------------- combining and tables

def concat_sets(sets: Iterable[ExplanationSet]) -> ExplanationSet:
    """Concatenate sets row-wise (e.g. the shards of one evaluation set). They must share meta,
    map shape, and which columns (core and extra) are present."""
    sets = list(sets)
    if not sets:
        raise CacheError("concat_sets needs at least one explanation set")
    first = sets[0]
    for i, s in enumerate(sets[1:], 1):
        if _meta_json(s.meta) != _meta_json(first.meta):
            diff = sorted(k for k in set(s.meta) | set(first.meta)
                          if s.meta.get(k, KeyError) != first.meta.get(k, KeyError))
            raise CacheError(f"concat_sets: set {i} has different meta (keys {diff})")
        if (s.maps is None) != (first.maps is None) or s.map_shape != first.map_shape:
            raise CacheError(f"concat_sets: set {i} has map shape {s.map_shape}, "
                             f"set 0 has {first.map_shape}")
        if list(s.columns()) != list(first.columns()):
            raise CacheError(f"concat_sets: set {i} has columns {list(s.columns())}, "
                             f"set 0 has {list(first.columns())}")

    def cat(get):
        return np.concatenate([get(s) for s in sets])

    return ExplanationSet(
        maps=None if first.maps is None else cat(lambda s: s.maps),
        **{n: (None if getattr(first, n) is None else cat(lambda s, n=n: getattr(s, n)))
           for n in CORE_COLUMNS},
        extra={k: cat(lambda s, k=k: s.extra[k]) for k in first.extra},
        meta=dict(first.meta),
    )


def _hashable(v):
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    return v


def to_frame(es: ExplanationSet, *, meta: bool | Sequence[str] = True) -> pd.DataFrame:
    """The per-sample columns as a DataFrame, plus the meta constants as columns (all of them,
    or the keys listed in ``meta``), ready for groupbys across many files. List-valued meta
    become tuples (hashable), dict-valued meta JSON strings. The maps are left out."""
    df = pd.DataFrame(es.columns())
    keys = list(es.meta) if meta is True else ([] if meta is False else list(meta))
    for k in keys:
        if k in df.columns:
            raise CacheError(f"meta key {k!r} clashes with a column")
        if k not in es.meta:
            raise CacheError(f"no meta key {k!r}; have {sorted(es.meta)}")
        v = _hashable(es.meta[k])
        df[k] = pd.Series([v] * len(df), index=df.index, dtype=object) \
            if isinstance(v, tuple) else v
    return df


__all__ = [
    "ExplanationSet", "CacheError", "write_explanations", "read_explanations", "read_meta",
    "read_info", "concat_sets", "to_frame", "FORMAT_VERSION", "CORE_COLUMNS",
]
