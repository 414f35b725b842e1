import json

import pytest
import torch

from xaisec import io
from xaisec.models.classifiers import build_model


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    m = build_model(arch="resnet20", num_classes=5).eval()
    io.save_model(m, tmp_path / "m.pt", {"dataset": "shapes", "seed": 1})
    meta = json.loads((tmp_path / "m.json").read_text())
    assert meta["spec"]["arch"] == "resnet20" and meta["seed"] == 1
    m2, _ = io.load_model(tmp_path / "m.pt")
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(m2(x), m(x))


def test_checkpoint_of_the_wrong_architecture_is_refused(tmp_path):
    vgg = build_model(arch="vgg13", num_classes=5)
    io.save_model(vgg, tmp_path / "m.pt", {})
    meta = json.loads((tmp_path / "m.json").read_text())
    meta["spec"]["arch"] = "resnet20"  # metadata claims a ResNet-20
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(io.CheckpointError, match="does not fit a resnet20"):
        io.load_model(tmp_path / "m.pt")


def test_checkpoint_with_wrong_class_count_is_refused(tmp_path):
    io.save_model(build_model(arch="resnet20", num_classes=10), tmp_path / "m.pt", {})
    from xaisec.models.classifiers import ModelSpec

    with pytest.raises(io.CheckpointError, match="wrong shapes"):
        io.load_model(tmp_path / "m.pt", spec=ModelSpec(arch="resnet20", num_classes=43))


def test_truncated_checkpoint_gives_a_clear_error(tmp_path):
    io.save_model(build_model(arch="resnet20"), tmp_path / "m.pt", {})
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "m.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(io.CheckpointError, match="cannot read checkpoint"):
        io.load_model(tmp_path / "m.pt")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError):
        io.load_model(tmp_path / "nope.pt", spec=build_model(arch="resnet20").spec)


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    p = tmp_path / "out.txt"
    io.write_text(p, "old")
    with pytest.raises(RuntimeError):
        with io.atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert p.read_text() == "old"
    assert [x.name for x in tmp_path.iterdir()] == ["out.txt"]


def test_provenance_records_what_ran():
    rec = io.provenance({"a": 1}, "cpu", {"seed": 1})
    assert rec["config"] == {"a": 1} and rec["device"] == "cpu"
    assert torch.__version__.startswith(rec["packages"]["torch"])
    assert len(rec["code_hash"]) == 16


def test_resolve_device():
    assert io.resolve_device("cpu").type == "cpu"
    assert io.resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            io.resolve_device("cuda")


# ---------------------------------------------------------------- Parquet integrity

def _per_sample_frame(n=24):
    """Like a per_sample.parquet: ids, strings, categories, booleans, floats, nullable ints."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "sample": np.arange(n) + 100, "model": "cifar10-resnet20-s0",
        "defense": pd.Categorical(rng.choice(["none", "cfn", "bcfn"], n)),
        "clean_correct": rng.random(n) > 0.3, "dissim": rng.random(n).astype("float32"),
        "mse": rng.random(n), "rank": pd.array([1, None, 3] * (n // 3), dtype="Int64"),
    })


def _flip_every_bit(path, read, same, n_data=48, n_footer=96, seed=0):
    """Flip every bit, one at a time, of ``n_data`` bytes in the data pages (page headers and
    values) and ``n_footer`` bytes of the footer (schema, offsets, key-value metadata, the
    length and magic); each read must raise a ValueError naming the file or give the same
    result as the intact file. Returns (flips, raised)."""
    import numpy as np

    data = path.read_bytes()
    footer = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    assert data[:4] == data[-4:] == b"PAR1" and 4 < footer < len(data) - 8
    rng = np.random.default_rng(seed)
    positions = np.concatenate([rng.choice(np.arange(4, footer), n_data, replace=False),
                                rng.choice(np.arange(footer, len(data)), n_footer, replace=False)])
    want = read(path)
    bad = path.with_name("flipped.parquet")
    silent, raised = [], 0
    for i in positions:
        for bit in range(8):
            b = bytearray(data)
            b[i] ^= 1 << bit
            bad.write_bytes(b)
            try:
                got = read(bad)
            except ValueError as e:
                assert str(bad) in str(e) and "delete it" in str(e), e
                raised += 1
                continue
            if not same(want, got):
                silent.append((int(i), bit))
    region = ["data" if i < footer else "footer" for i, _ in silent]
    assert not silent, f"{len(silent)} flips changed what was read without an error: " \
                       f"{list(zip(region, silent))[:10]} (footer starts at {footer})"
    return len(positions) * 8, raised


def _schema_metadata(path):
    """Footer key-value metadata, less the content digest entry (a flip in its key, there or
    in the copy inside ARROW:schema, leaves a file that reads as one without digest, whose
    values are intact)."""
    md = io.read_parquet_metadata(path).schema.to_arrow_schema().metadata
    return {k: v for k, v in md.items() if not v.startswith(b'{"algorithm": "sha256"')}


def test_bit_flips_in_a_per_sample_table_raise_or_change_nothing(tmp_path):
    import pandas as pd

    p = tmp_path / "per_sample.parquet"
    io.write_parquet(_per_sample_frame(), p)
    pd.testing.assert_frame_equal(io.read_parquet(p), _per_sample_frame())

    def read(path):
        return io.read_parquet(path), _schema_metadata(path)

    def same(a, b):
        try:
            pd.testing.assert_frame_equal(a[0], b[0], check_exact=True)
        except AssertionError:
            return False
        return a[1] == b[1]

    flips, raised = _flip_every_bit(p, read, same)
    assert raised > flips // 4  # most of a small file is checked bytes


def test_bit_flips_in_an_explanation_cache_raise_or_change_nothing(tmp_path):
    import numpy as np

    from xaisec.cache import (CORE_COLUMNS, ExplanationSet, read_explanations, read_info,
                              write_explanations)

    rng = np.random.default_rng(0)
    n = 6
    es = ExplanationSet(maps=rng.random((n, 1, 4, 4), dtype=np.float32), sample=np.arange(n),
                        label=rng.integers(0, 10, n), pred=rng.integers(0, 10, n),
                        confidence=rng.random(n, dtype=np.float32), target=rng.integers(0, 10, n),
                        extra={"success": rng.random(n) > 0.5},
                        meta={"model": "cifar10-resnet20-s0", "seed": 0, "eps": 0.031})
    p = tmp_path / "e.parquet"
    write_explanations(p, es)

    def read(path):
        info = read_info(path)
        info.pop("size_bytes")
        return read_explanations(path), info, _schema_metadata(path)

    def same(a, b):
        x, y = a[0], b[0]
        return (np.array_equal(x.maps, y.maps) and x.meta == y.meta and a[1:] == b[1:]
                and all(np.array_equal(getattr(x, c), getattr(y, c))
                        and getattr(x, c).dtype == getattr(y, c).dtype for c in CORE_COLUMNS)
                and list(x.extra) == list(y.extra)
                and np.array_equal(x.extra["success"], y.extra["success"]))

    flips, raised = _flip_every_bit(p, read, same)
    assert raised > flips // 4


def test_parquet_digest_catches_what_page_checksums_miss(tmp_path):
    """Page checksums do not cover the footer: one damaged byte in the schema metadata (in
    the serialised Arrow schema, where pyarrow reads it from) reads back silently changed
    without the content digest."""
    import base64

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"x": [1, 2, 3]}).replace_schema_metadata({b"xaisec.meta": b'{"seed": 0}'})
    p = tmp_path / "t.parquet"
    io.write_parquet(table, p)
    data = p.read_bytes()
    b64 = pq.ParquetFile(p).metadata.metadata[b"ARROW:schema"]
    schema = bytearray(base64.b64decode(b64))
    schema[schema.index(b'{"seed": 0}') + len(b'{"seed": ')] ^= 1  # "0" -> "1"
    damaged = base64.b64encode(bytes(schema))
    assert sum(a != b for a, b in zip(b64, damaged)) == 1 and data.count(b64) == 1
    p.write_bytes(data.replace(b64, damaged))
    assert pq.read_table(p, page_checksum_verification=True).schema.metadata[b"xaisec.meta"] \
        == b'{"seed": 1}'
    with pytest.raises(io.CorruptFileError, match=f"{p}: its schema metadata does not match"):
        io.read_parquet_table(p)
    with pytest.raises(io.CorruptFileError, match="delete it and rerun"):
        io.read_parquet_metadata(p)


def test_parquet_round_trip_and_errors(tmp_path):
    import numpy as np
    import pandas as pd

    df = _per_sample_frame()
    p = tmp_path / "d.parquet"
    io.write_parquet(df, p, row_group_size=5)  # several chunks read back: same digests
    pd.testing.assert_frame_equal(io.read_parquet(p), pd.read_parquet(p))
    pd.testing.assert_frame_equal(io.read_parquet(p, columns=["mse", "model"]),
                                  df[["mse", "model"]])
    assert io.read_parquet_metadata(p).num_rows == len(df)
    assert [x.name for x in tmp_path.iterdir()] == ["d.parquet"]  # no temporary file left
    with pytest.raises(KeyError, match=r"no columns \['nope'\]"):
        io.read_parquet(p, columns=["nope"])
    with pytest.raises(FileNotFoundError, match="missing file"):
        io.read_parquet(tmp_path / "none.parquet")
    old = tmp_path / "old.parquet"  # written before digests: page checksums only
    df.to_parquet(old, index=False)
    pd.testing.assert_frame_equal(io.read_parquet(old), df)
    data = p.read_bytes()
    for keep in (0, 10, len(data) // 2, len(data) - 3):
        p.write_bytes(data[:keep])
        with pytest.raises(io.CorruptFileError, match=f"{p}.*truncated or corrupt"):
            io.read_parquet(p)
    assert np.isfinite(df["mse"]).all()


# ---------------------------------------------------------------- one writer per output

def _try_lock(out_dir, conn):
    try:
        with io.output_lock(out_dir):
            conn.send("acquired")
    except io.OutputLocked as e:
        conn.send(str(e))
    conn.close()


def _lock_from_another_process(out_dir) -> str:
    import multiprocessing

    ctx = multiprocessing.get_context("fork")  # flock is per open file: a real second process
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_try_lock, args=(str(out_dir), send))
    proc.start()
    try:
        assert receive.poll(60), "the other process did not answer"
        return receive.recv()
    finally:
        proc.join(60)


def test_output_lock_stops_a_second_writer_until_released(tmp_path):
    import os

    out = tmp_path / "run"
    with io.output_lock(out) as lock:
        assert lock == out / ".lock" and lock.exists()
        msg = _lock_from_another_process(out)
        assert msg.startswith(f"another run is writing {out} (lock {lock} held by pid "
                              f"{os.getpid()} "), msg
        with pytest.raises(io.OutputLocked, match="another run is writing"):
            with io.output_lock(out):  # a second attempt in this process too
                pass
        assert lock.exists()  # the failed attempts did not release the first one's lock
        assert _lock_from_another_process(out).startswith("another run is writing")
    assert not (out / ".lock").exists()
    assert _lock_from_another_process(out) == "acquired"
    with pytest.raises(RuntimeError):  # released when the block fails too
        with io.output_lock(out):
            raise RuntimeError("training failed")
    assert _lock_from_another_process(out) == "acquired"


def test_training_and_finetuning_hold_the_output_lock(tmp_path):
    from xaisec.attacks.backdoor import finetune
    from xaisec.train import fit

    with io.output_lock(tmp_path):  # the lock is taken before anything else: dummy arguments
        with pytest.raises(io.OutputLocked, match=f"another run is writing {tmp_path}"):
            fit(None, None, None, None, None, None, tmp_path, 0)
        with pytest.raises(io.OutputLocked, match=f"another run is writing {tmp_path}"):
            finetune(None, None, None, None, None, None, out_dir=tmp_path, seed=0)


# ---------------------------------------------------------------- resume files that do not fit

def _sgd_with_state(params, lr=0.1):
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()  # momentum buffers, one per parameter, of its shape
    return opt, torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[5])


@pytest.mark.parametrize("case", ["other_parameter_list", "same_count_wrong_shapes",
                                  "bad_generator_state"])
def test_resume_file_that_does_not_fit_leaves_everything_untouched(tmp_path, case):
    import copy

    torch.manual_seed(0)
    saved = build_model(arch="resnet20", num_classes=3)
    params = list(saved.parameters())
    if case == "other_parameter_list":
        params = params[:-2]  # e.g. a run that froze the classifier
    elif case == "same_count_wrong_shapes":
        params = params[::-1]
    opt_saved, sched_saved = _sgd_with_state(params)
    gen = torch.Generator().manual_seed(1)
    io.save_resume(tmp_path / "resume.pt", "fp", 3, [{"epoch": 1}], saved, opt_saved,
                   sched_saved, gen)
    if case == "bad_generator_state":  # fails only after the model and optimizer are loaded
        st = torch.load(tmp_path / "resume.pt", weights_only=True)
        st["generator"] = torch.zeros(3, dtype=torch.uint8)
        torch.save(st, tmp_path / "resume.pt")

    model = build_model(arch="resnet20", num_classes=3)
    opt, sched = _sgd_with_state(list(model.parameters()), lr=0.05)
    gen = torch.Generator().manual_seed(2)
    weights = {k: v.numpy().tobytes() for k, v in model.state_dict().items()}
    opt_state, sched_state = copy.deepcopy(opt.state_dict()), copy.deepcopy(sched.state_dict())
    gen_state, rng_state = gen.get_state(), torch.get_rng_state()

    assert io.load_resume(tmp_path / "resume.pt", "fp", model, opt, sched, gen) == (0, [], {})
    assert {k: v.numpy().tobytes() for k, v in model.state_dict().items()} == weights
    after = opt.state_dict()
    assert after["param_groups"] == opt_state["param_groups"]
    assert all(torch.equal(after["state"][i]["momentum_buffer"], s["momentum_buffer"])
               for i, s in opt_state["state"].items())
    assert sched.state_dict() == sched_state
    assert torch.equal(gen.get_state(), gen_state) and torch.equal(torch.get_rng_state(), rng_state)

    # a file that fits is resumed
    opt_fit, sched_fit = _sgd_with_state(list(saved.parameters()))
    io.save_resume(tmp_path / "resume.pt", "fp", 3, [{"epoch": 1}], saved, opt_fit, sched_fit)
    assert io.load_resume(tmp_path / "resume.pt", "fp", model, opt, sched) \
        == (3, [{"epoch": 1}], {})
    for k, v in saved.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
