"""The explanation cache (xaisec.cache): exact round trips, partial reads, clear errors on bad
input and bad files, atomic writes; plus a throughput benchmark (``-m bench``)."""
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from xaisec import cache
from xaisec.cache import (CacheError, ExplanationSet, concat_sets, read_explanations, read_info,
                          read_meta, to_frame, write_explanations)

META = {"model": "resnet20-cifar10-s0", "dataset": "cifar10", "arch": "resnet20",
        "mode": "standard", "variant": "clean", "explainer": "gradcam", "batch_size": 128,
        "seed": 0, "eps": 0.031, "layers": ["layer3", "layer2"]}


def make_set(n=12, c=1, h=8, w=8, seed=0, meta=META) -> ExplanationSet:
    rng = np.random.default_rng(seed)
    return ExplanationSet(
        maps=rng.standard_normal((n, c, h, w)).astype(np.float32),
        sample=np.arange(n, dtype=np.int64) + 100,
        label=rng.integers(0, 10, n),
        pred=rng.integers(0, 10, n),
        confidence=rng.random(n, dtype=np.float32),
        target=rng.integers(0, 10, n),
        extra={"target_prob": rng.random(n).astype(np.float32),
               "batch": np.arange(n) // 4,
               "success": rng.random(n) > 0.5},
        meta=dict(meta),
    )


def assert_same(a: ExplanationSet, b: ExplanationSet):
    np.testing.assert_array_equal(a.maps, b.maps)
    for name in cache.CORE_COLUMNS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert getattr(b, name).dtype == cache.CORE_COLUMNS[name]
    assert list(a.extra) == list(b.extra)
    for k in a.extra:
        np.testing.assert_array_equal(a.extra[k], b.extra[k])
        assert a.extra[k].dtype == b.extra[k].dtype
    assert a.meta == b.meta


# ---------------------------------------------------------------- round trips

@pytest.mark.parametrize("c", [1, 3])
def test_float32_round_trip_is_exact(tmp_path, c):
    es = make_set(c=c, h=7, w=9)
    p = tmp_path / "e.parquet"
    write_explanations(p, es)
    back = read_explanations(p)
    assert back.maps.dtype == np.float32 and back.maps.shape == (12, c, 7, 9)
    assert_same(es, back)
    assert read_meta(p) == META
    info = read_info(p)
    assert info["map_shape"] == (c, 7, 9) and info["num_rows"] == 12
    assert info["map_dtype"] == "float32" and info["format_version"] == cache.FORMAT_VERSION
    # the layout promised to other readers: fixed-size list column + shape in schema metadata
    schema = pq.read_schema(p)
    assert str(schema.field("map").type) == f"fixed_size_list<element: float not null>[{c * 63}]"
    assert json.loads(schema.metadata[b"xaisec.map_shape"]) == [c, 7, 9]
    assert json.loads(schema.metadata[b"xaisec.meta"]) == META


@pytest.mark.parametrize("c", [1, 3])
def test_float16_round_trip_within_half_precision(tmp_path, c):
    es = make_set(n=50, c=c, h=16, w=16)
    es.maps[0, 0, 0, :4] = [1e-6, -3e-8, 60000.0, 0.0]  # subnormal, underflow, near max
    p16, p32 = tmp_path / "h.parquet", tmp_path / "f.parquet"
    write_explanations(p16, es, dtype="float16")
    write_explanations(p32, es)
    back = read_explanations(p16)
    assert back.maps.dtype == np.float32  # always read back as float32
    # rounding to nearest: relative error <= 2**-11 (normal), absolute <= 2**-25 (subnormal)
    np.testing.assert_allclose(back.maps, es.maps, rtol=2**-11, atol=2**-25)
    np.testing.assert_array_equal(back.maps, es.maps.astype(np.float16).astype(np.float32))
    assert read_info(p16)["map_dtype"] == "float16"
    np.testing.assert_array_equal(back.label, es.label)
    assert back.meta == es.meta
    # the map column is half the size; the file too, up to the small columns and footer
    assert os.path.getsize(p16) < 0.6 * os.path.getsize(p32)


def test_float16_refuses_values_beyond_its_range(tmp_path):
    es = make_set()
    es.maps[3, 0, 1, 1] = 1e5
    with pytest.raises(CacheError, match="float16 range"):
        write_explanations(tmp_path / "e.parquet", es, dtype="float16")
    write_explanations(tmp_path / "e.parquet", es)  # float32 is fine


def test_float64_and_integer_like_inputs_are_converted(tmp_path):
    es = make_set()
    es.maps = es.maps.astype(np.float64)
    es.label = es.label.astype(np.int32)
    es.pred = es.pred.astype(np.float64)  # integer-valued floats are accepted
    write_explanations(tmp_path / "e.parquet", es)
    back = read_explanations(tmp_path / "e.parquet")
    assert back.maps.dtype == np.float32 and back.label.dtype == np.int64
    np.testing.assert_array_equal(back.maps, es.maps.astype(np.float32))
    np.testing.assert_array_equal(back.pred, es.pred.astype(np.int64))


def test_many_row_groups_read_back_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "_ROW_GROUP_BYTES", 3 * 8 * 8 * 4 * 5)  # 5 rows per group
    es = make_set(n=23, c=3)
    p = tmp_path / "e.parquet"
    write_explanations(p, es)
    assert pq.ParquetFile(p).metadata.num_row_groups == 5
    assert_same(es, read_explanations(p))


def test_empty_set_round_trips(tmp_path):
    es = make_set(n=0, c=3)
    write_explanations(tmp_path / "e.parquet", es)
    back = read_explanations(tmp_path / "e.parquet")
    assert back.maps.shape == (0, 3, 8, 8) and len(back) == 0


@pytest.mark.parametrize("compression", ["snappy", "none"])
def test_other_codecs(tmp_path, compression):
    es = make_set()
    write_explanations(tmp_path / "e.parquet", es, compression=compression)
    assert_same(es, read_explanations(tmp_path / "e.parquet"))


# ---------------------------------------------------------------- partial reads

def test_maps_false_reads_only_the_small_columns(tmp_path, monkeypatch):
    es = make_set(c=3)
    p = tmp_path / "e.parquet"
    write_explanations(p, es)
    asked = []
    real = pq.read_table
    monkeypatch.setattr(pq, "read_table", lambda path, columns=None, **kw: (
        asked.append(list(columns)), real(path, columns=columns, **kw))[1])
    back = read_explanations(p, maps=False)
    assert "map" not in asked[-1]
    assert back.maps is None and len(back) == 12
    np.testing.assert_array_equal(back.confidence, es.confidence)
    assert list(back.extra) == ["target_prob", "batch", "success"] and back.meta == META


def test_columns_subset(tmp_path):
    es = make_set()
    p = tmp_path / "e.parquet"
    write_explanations(p, es)
    back = read_explanations(p, columns=["label", "batch"], maps=False)
    assert back.maps is None and back.pred is None and back.sample is None
    assert list(back.columns()) == ["label", "batch"]
    np.testing.assert_array_equal(back.extra["batch"], es.extra["batch"])
    with_maps = read_explanations(p, columns=["pred"])
    np.testing.assert_array_equal(with_maps.maps, es.maps)
    assert list(with_maps.columns()) == ["pred"]
    with pytest.raises(CacheError, match=r"no columns \['nope'\]"):
        read_explanations(p, columns=["nope"])
    with pytest.raises(CacheError, match="maps=True"):
        read_explanations(p, columns=["map"])


def test_arrays_are_read_only_unless_copied(tmp_path):
    p = tmp_path / "e.parquet"
    write_explanations(p, make_set())
    back = read_explanations(p)
    assert not back.maps.flags.writeable and not back.label.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        back.maps[0] = 0
    writable = read_explanations(p, copy=True)
    writable.maps[0] = 0
    writable.label[0] = -1


# ---------------------------------------------------------------- combining and tables

def test_concat_sets_and_to_frame(tmp_path):
    a, b = make_set(n=5, seed=1), make_set(n=7, seed=2)
    both = concat_sets([a, b])
    assert len(both) == 12
    np.testing.assert_array_equal(both.maps[5:], b.maps)
    np.testing.assert_array_equal(both.extra["batch"][:5], a.extra["batch"])
    write_explanations(tmp_path / "e.parquet", both)
    df = to_frame(read_explanations(tmp_path / "e.parquet", maps=False))
    assert len(df) == 12
    assert {"sample", "label", "pred", "confidence", "target", "target_prob", "batch",
            "explainer", "seed", "layers"} <= set(df.columns)
    assert (df["explainer"] == "gradcam").all() and df["layers"].iloc[0] == ("layer3", "layer2")
    # meta constants group like any other column, lists included (as tuples)
    frames = pd.concat([df, to_frame(make_set(n=3, meta={**META, "explainer": "ig"}))])
    counts = frames.groupby(["explainer", "layers"]).size()
    assert counts[("gradcam", ("layer3", "layer2"))] == 12 and counts[("ig", ("layer3", "layer2"))] == 3
    assert list(to_frame(a, meta=["explainer"]).columns)[-1] == "explainer"


def test_concat_sets_refuses_mismatches():
    a = make_set()
    with pytest.raises(CacheError, match="different meta"):
        concat_sets([a, make_set(meta={**META, "seed": 1})])
    with pytest.raises(CacheError, match="map shape"):
        concat_sets([a, make_set(c=3)])
    b = make_set()
    del b.extra["batch"]
    with pytest.raises(CacheError, match="columns"):
        concat_sets([a, b])
    with pytest.raises(CacheError, match="at least one"):
        concat_sets([])


# ---------------------------------------------------------------- errors

def test_bad_shapes_and_lengths_are_refused(tmp_path):
    es = make_set()
    with pytest.raises(ValueError, match="4-D"):
        ExplanationSet(maps=es.maps[:, 0], sample=es.sample, label=es.label, pred=es.pred,
                       confidence=es.confidence, target=es.target)
    with pytest.raises(ValueError, match="mismatched lengths.*'label': 11"):
        ExplanationSet(maps=es.maps, sample=es.sample, label=es.label[:-1], pred=es.pred,
                       confidence=es.confidence, target=es.target)
    es.extra["batch"] = es.extra["batch"][:3]  # mutated after construction: caught on write
    with pytest.raises(ValueError, match="mismatched lengths"):
        write_explanations(tmp_path / "e.parquet", es)
    es = make_set()
    es.extra["label"] = es.label
    with pytest.raises(ValueError, match="clashes"):
        write_explanations(tmp_path / "e.parquet", es)
    es = make_set(meta={**META, "pred": 1})
    with pytest.raises(ValueError, match="clash"):
        write_explanations(tmp_path / "e.parquet", es)
    es = make_set()
    es.label = es.label + 0.5
    with pytest.raises(ValueError, match="'label': expected integers"):
        write_explanations(tmp_path / "e.parquet", es)
    with pytest.raises(ValueError, match="dtype must be"):
        write_explanations(tmp_path / "e.parquet", make_set(), dtype="bfloat16")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_maps_are_refused(tmp_path, bad):
    es = make_set()
    es.maps[4, 0, 2, 3] = bad
    with pytest.raises(ValueError, match=r"column 'map'.*NaN or inf \(rows \[4\]\)"):
        write_explanations(tmp_path / "e.parquet", es)
    assert not any(tmp_path.iterdir())


def test_meta_must_be_json(tmp_path):
    es = make_set(meta={"model": object()})
    with pytest.raises(ValueError, match="JSON"):
        write_explanations(tmp_path / "e.parquet", es)
    es = make_set(meta={"seed": np.int64(3), "eps": np.float32(0.5), "shape": (1, 2)})
    write_explanations(tmp_path / "e.parquet", es)
    assert read_meta(tmp_path / "e.parquet") == {"seed": 3, "eps": 0.5, "shape": [1, 2]}


def test_foreign_parquet_is_refused_naming_the_file(tmp_path):
    p = tmp_path / "foreign.parquet"
    pd.DataFrame({"label": [1, 2], "pred": [1, 0]}).to_parquet(p)
    for fn in (read_explanations, read_meta, read_info):
        with pytest.raises(ValueError, match=f"{p}.*not an xaisec explanation cache"):
            fn(p)


@pytest.mark.parametrize("keep", [0, 0.3, 0.9, -8])
def test_truncated_file_is_refused_naming_the_file(tmp_path, keep):
    p = tmp_path / "e.parquet"
    write_explanations(p, make_set(c=3))
    data = p.read_bytes()
    p.write_bytes(data[:keep] if isinstance(keep, int) else data[:int(len(data) * keep)])
    with pytest.raises(ValueError, match=f"{p}.*truncated or corrupt"):
        read_explanations(p)


def test_corrupt_bytes_inside_the_file_are_caught(tmp_path):
    p = tmp_path / "e.parquet"
    write_explanations(p, make_set(n=64, c=3, h=16, w=16), compression="none")
    data = bytearray(p.read_bytes())
    mid = len(data) // 2  # inside the map column's data pages
    data[mid:mid + 16] = bytes(16)
    p.write_bytes(bytes(data))
    read_explanations(p, maps=False)  # the small columns are intact
    with pytest.raises(ValueError, match=f"{p}.*truncated or corrupt"):
        read_explanations(p)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing explanation cache"):
        read_explanations(tmp_path / "nope.parquet")


# ---------------------------------------------------------------- atomicity

def test_exception_mid_write_leaves_no_file_and_no_temp_file(tmp_path, monkeypatch):
    real = pq.write_table

    def half_then_die(table, where, **kw):
        real(table.slice(0, 3), where, **kw)  # something is on disk under the temp name
        assert Path(where).exists() and Path(where).parent == tmp_path
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(pq, "write_table", half_then_die)
    p = tmp_path / "e.parquet"
    with pytest.raises(KeyboardInterrupt):
        write_explanations(p, make_set())
    assert list(tmp_path.iterdir()) == []

    # an existing file survives a failed overwrite untouched
    monkeypatch.setattr(pq, "write_table", real)
    es = make_set()
    write_explanations(p, es)
    before = p.read_bytes()
    monkeypatch.setattr(pq, "write_table", half_then_die)
    with pytest.raises(KeyboardInterrupt):
        write_explanations(p, make_set(seed=5))
    assert p.read_bytes() == before and list(tmp_path.iterdir()) == [p]


# ---------------------------------------------------------------- benchmark

def _realistic_maps(n, c, rng):
    """CAM-like maps for C=1 (smooth, in [0, 1]); gradient-like maps for C=3 (noise under a
    smooth envelope, ~1e-2). Random normal floats would compress worse than real maps."""
    low = rng.random((n, 1, 4, 4), dtype=np.float32)
    smooth = np.kron(low, np.ones((1, 1, 8, 8), np.float32))
    k = np.array([1, 4, 6, 4, 1], np.float32) / 16  # separable blur to smooth the blocks
    for ax in (2, 3):
        pad = [(0, 0)] * 4
        pad[ax] = (2, 2)
        padded = np.pad(smooth, pad, mode="edge")
        smooth = sum(w * np.take(padded, np.arange(i, i + 32), axis=ax) for i, w in enumerate(k))
    smooth /= smooth.max(axis=(2, 3), keepdims=True)
    if c == 1:
        return np.ascontiguousarray(smooth, dtype=np.float32)
    noise = rng.standard_normal((n, c, 32, 32), dtype=np.float32)
    return np.ascontiguousarray(1e-2 * noise * smooth, dtype=np.float32)


@pytest.mark.bench
def test_cache_throughput(tmp_path):
    from xaisec.io import write_json

    n, repeat = 10_000, 3
    rng = np.random.default_rng(0)
    results = []
    print(f"\nexplanation cache throughput, {n} maps, zstd, best of {repeat} "
          f"(MB/s = float32 map data in memory, 1 MB = 1e6 B):")
    for c in (1, 3):
        es = make_set(n=n, c=c, h=32, w=32)
        es.maps = _realistic_maps(n, c, rng)
        mbytes = es.maps.nbytes / 1e6
        for dtype in ("float32", "float16"):
            p = tmp_path / f"c{c}_{dtype}.parquet"
            tw, tr, ts = [], [], []
            for _ in range(repeat):
                t = time.perf_counter()
                write_explanations(p, es, dtype=dtype)
                tw.append(time.perf_counter() - t)
                t = time.perf_counter()
                back = read_explanations(p)
                tr.append(time.perf_counter() - t)
                t = time.perf_counter()
                read_explanations(p, maps=False)
                ts.append(time.perf_counter() - t)
            assert back.maps.shape == (n, c, 32, 32)
            row = {"shape": [c, 32, 32], "dtype": dtype, "n": n,
                   "map_mb_in_memory": round(mbytes, 2),
                   "file_mb": round(os.path.getsize(p) / 1e6, 3),
                   "write_maps_per_s": round(n / min(tw)), "write_mb_per_s": round(mbytes / min(tw), 1),
                   "read_maps_per_s": round(n / min(tr)), "read_mb_per_s": round(mbytes / min(tr), 1),
                   "read_columns_only_s": round(min(ts), 4)}
            results.append(row)
            print(f"  {c}x32x32 {dtype}: file {row['file_mb']:7.2f} MB | write "
                  f"{row['write_maps_per_s']:8d} maps/s {row['write_mb_per_s']:7.1f} MB/s | read "
                  f"{row['read_maps_per_s']:8d} maps/s {row['read_mb_per_s']:7.1f} MB/s | "
                  f"maps=False {1e3 * row['read_columns_only_s']:.1f} ms")
    out = Path(__file__).resolve().parents[1] / "results" / "benchmarks" / "cache_throughput.json"
    write_json(out, {"maps": n, "compression": "zstd", "repeat": repeat,
                     "mb_definition": "float32 map bytes in memory / 1e6",
                     "map_content": "C=1: smooth CAM-like in [0,1]; C=3: noise x smooth envelope ~1e-2",
                     "cpu_count": os.cpu_count(), "platform": platform.platform(),
                     "results": results})
