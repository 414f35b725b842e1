import json

import pytest
import torch

from xaisec import io
from xaisec.models import build_model


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
    from xaisec.models import ModelSpec

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
