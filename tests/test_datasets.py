"""Tests of xaisec.data.datasets with tiny data made on the spot (no network, no torch)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pickle
import stat
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xaisec.data import datasets as D

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/data")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _png(path: Path, size=(32, 32), color=(0, 0, 0), box=None, box_color=(255, 255, 255)):
    """Solid image (optionally with a filled box x1, y1, x2, y2 inclusive) saved as PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[:] = color
    if box is not None:
        x1, y1, x2, y2 = box
        arr[y1:y2 + 1, x1:x2 + 1] = box_color
    Image.fromarray(arr).save(path, format="PNG")
    return arr


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def _zip_dir(src: Path, out: Path, top: str | None = None) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for p in sorted(src.rglob("*")):
            arc = p.relative_to(src).as_posix()
            if top:
                arc = f"{top}/{arc}"
            if p.is_dir():
                zf.writestr(arc + "/", b"")
            else:
                zf.write(p, arc)
    return out


def _tar_dir(src: Path, out: Path, top: str | None = None, mode: str = "w:gz") -> Path:
    with tarfile.open(out, mode) as tf:
        for p in sorted(src.iterdir()):
            tf.add(p, arcname=f"{top}/{p.name}" if top else p.name)
    return out


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


CIFAR10 = D.CIFAR10_CLASSES


def _make_cifar_folder(root: Path, n_train=2, n_test=1, odd_size=True) -> Path:
    """Image-folder tree with all 10 CIFAR-10 classes; red channel = 20 * official label."""
    for split, n in (("train", n_train), ("test", n_test)):
        for label, name in enumerate(CIFAR10):
            for i in range(n):
                size = (40, 48) if (odd_size and label == 3 and i == 0) else (32, 32)
                _png(root / split / name / f"{i:04d}.png", size=size, color=(20 * label, 100, 7 * i))
    return root


# --------------------------------------------------------------------------------------------
# specs
# --------------------------------------------------------------------------------------------


def test_specs_are_complete():
    assert {"cifar10", "cifar100", "gtsrb", "shapes"} <= set(D.DATASETS)
    c10, c100, gt = D.DATASETS["cifar10"], D.DATASETS["cifar100"], D.DATASETS["gtsrb"]
    assert c10.class_names[:3] == ("airplane", "automobile", "bird") and c10.num_classes == 10
    assert len(c100.class_names) == 100 == c100.num_classes
    assert list(c100.class_names) == sorted(set(c100.class_names))  # official order is alphabetical
    assert len(gt.class_names) == 43 == gt.num_classes and len(set(gt.class_names)) == 43
    assert gt.class_names[0] == "speed limit 20"
    assert gt.class_names[42] == "end of no passing veh > 3.5 tons"
    assert gt.has_masks and not c10.has_masks
    assert c10.remotes[0].checksum == "md5:c58f30108f718f92721af3b95e74349a"
    assert c100.remotes[0].checksum == "md5:eb9058c3a382ffc7106e4002c42a8d85"
    assert [r.filename for r in gt.remotes] == [
        "GTSRB_Final_Training_Images.zip", "GTSRB_Final_Test_Images.zip", "GTSRB_Final_Test_GT.zip"]
    for spec in (c10, c100, gt):
        for r in spec.remotes:
            assert r.url.startswith("https://") and r.url.endswith(r.filename)
            D._parse_checksum(r.checksum)


def test_unknown_dataset_lists_known_names(tmp_path):
    with pytest.raises(ValueError, match="cifar10.*gtsrb"):
        D.get_spec("mnist")
    with pytest.raises(ValueError, match="unknown data set 'mnist'"):
        D.prepare("mnist", tmp_path / "out")
    with pytest.raises(ValueError, match="unknown"):
        D.fetch("mnist", tmp_path / "raw")


# --------------------------------------------------------------------------------------------
# checksums
# --------------------------------------------------------------------------------------------


def test_verify_checksum(tmp_path):
    f = tmp_path / "blob.bin"
    f.write_bytes(np.random.default_rng(0).bytes(3 << 20))  # several read chunks
    md5, sha = _md5(f), _sha256(f)
    D.verify_checksum(f, f"md5:{md5}")
    D.verify_checksum(f, f"sha256:{sha}")
    D.verify_checksum(f, f"SHA256:{sha.upper()}")
    assert D.file_digest(f, "md5") == md5
    for bad in (f"md5:{'0' * 32}", f"sha256:{'f' * 64}"):
        with pytest.raises(D.ChecksumError) as err:
            D.verify_checksum(f, bad)
        msg = str(err.value)
        assert "blob.bin" in msg and bad.split(":")[1] in msg
        assert (md5 if bad.startswith("md5") else sha) in msg
        assert isinstance(err.value, ValueError)
    with pytest.raises(ValueError, match="malformed"):
        D.verify_checksum(f, "crc32:1234")
    with pytest.raises(ValueError, match="malformed"):
        D.verify_checksum(f, "md5:abc")


# --------------------------------------------------------------------------------------------
# safe extraction
# --------------------------------------------------------------------------------------------


def _zip_with(path: Path, name: str, data: bytes = b"evil", symlink: bool = False):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok/fine.txt", b"fine")
        info = zipfile.ZipInfo(name)
        if symlink:
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, data)
    return path


def _zip_two_links(path: Path):
    with zipfile.ZipFile(path, "w") as zf:
        for name, target in (("c", b"."), ("a/b", b"../c/..")):
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def _tar_with(path: Path, member: tarfile.TarInfo, data: bytes | None = None, extra=()):
    with tarfile.open(path, "w:gz") as tf:
        ok = tarfile.TarInfo("ok/fine.txt")
        ok.size = 4
        tf.addfile(ok, io.BytesIO(b"fine"))
        for m, d in list(extra) + [(member, data)]:
            if d is not None:
                m.size = len(d)
                tf.addfile(m, io.BytesIO(d))
            else:
                tf.addfile(m)
    return path


def _ti(name, type_=tarfile.REGTYPE, linkname=""):
    m = tarfile.TarInfo(name)
    m.type = type_
    m.linkname = linkname
    return m


UNSAFE = {
    "zip-dotdot": lambda p: _zip_with(p.with_suffix(".zip"), "../evil.txt"),
    "zip-nested-dotdot": lambda p: _zip_with(p.with_suffix(".zip"), "ok/../../evil.txt"),
    "zip-absolute": lambda p: _zip_with(p.with_suffix(".zip"), "/tmp/evil.txt"),
    "zip-backslash": lambda p: _zip_with(p.with_suffix(".zip"), "ok\\..\\..\\evil.txt"),
    "zip-symlink": lambda p: _zip_with(p.with_suffix(".zip"), "ok/link", b"../../evil", symlink=True),
    "zip-symlink-abs": lambda p: _zip_with(p.with_suffix(".zip"), "ok/link", b"/etc", symlink=True),
    "tar-dotdot": lambda p: _tar_with(p.with_suffix(".tar.gz"), _ti("../evil.txt"), b"evil"),
    "tar-absolute": lambda p: _tar_with(p.with_suffix(".tar.gz"), _ti("/tmp/evil.txt"), b"evil"),
    "tar-symlink": lambda p: _tar_with(p.with_suffix(".tar.gz"),
                                       _ti("ok/link", tarfile.SYMTYPE, "../../evil")),
    "tar-symlink-abs": lambda p: _tar_with(p.with_suffix(".tar.gz"),
                                           _ti("link", tarfile.SYMTYPE, "/etc")),
    "tar-hardlink": lambda p: _tar_with(p.with_suffix(".tar.gz"),
                                        _ti("ok/hl", tarfile.LNKTYPE, "../evil")),
    "tar-device": lambda p: _tar_with(p.with_suffix(".tar.gz"), _ti("dev/null", tarfile.CHRTYPE)),
    "tar-fifo": lambda p: _tar_with(p.with_suffix(".tar.gz"), _ti("fifo", tarfile.FIFOTYPE)),
    # an in-tree symlink to "..": harmless alone, but a later member written through it escapes
    "tar-through-symlink": lambda p: _tar_with(
        p.with_suffix(".tar.gz"), _ti("ok/up/evil.txt"), b"evil",
        extra=[(_ti("ok/up", tarfile.SYMTYPE, ".."), None),
               (_ti("ok/up2", tarfile.SYMTYPE, "../ok/up/.."), None)]),
    # lexically "a/b -> ../c/.." normalises to ".", but through "c -> ." it is dest's parent
    "tar-symlink-via-link": lambda p: _tar_with(
        p.with_suffix(".tar.gz"), _ti("a/b", tarfile.SYMTYPE, "../c/.."),
        extra=[(_ti("c", tarfile.SYMTYPE, "."), None)]),
    "zip-symlink-via-link": lambda p: _zip_two_links(p.with_suffix(".zip")),
    "tar-symlink-chain": lambda p: _tar_with(
        p.with_suffix(".tar.gz"), _ti("a/b", tarfile.SYMTYPE, "../c/.."),
        extra=[(_ti("c", tarfile.SYMTYPE, "ok/../.."), None)]),
}


@pytest.mark.parametrize("kind", sorted(UNSAFE))
def test_unsafe_archives_are_refused(tmp_path, kind):
    work = tmp_path / "work"
    work.mkdir()
    archive = UNSAFE[kind](work / "bad")
    before = _tree(tmp_path)
    dest = work / "out" / "dest"
    with pytest.raises(D.UnsafeArchiveError) as err:
        D.safe_extract(archive, dest)
    assert archive.name in str(err.value)
    assert isinstance(err.value, ValueError)
    after = _tree(tmp_path)
    # nothing written anywhere: no dest, no temp dir, nothing outside
    assert after - before <= {"work/out"}
    assert not dest.exists()
    assert not (tmp_path / "evil.txt").exists() and not (work / "evil.txt").exists()


def test_unsafe_member_named_in_error(tmp_path):
    archive = _zip_with(tmp_path / "bad.zip", "../evil.txt")
    with pytest.raises(D.UnsafeArchiveError, match=r"bad\.zip.*\.\./evil\.txt"):
        D.safe_extract(archive, tmp_path / "dest")


def test_safe_archive_with_internal_links(tmp_path):
    tar = _tar_with(tmp_path / "good.tar.gz", _ti("ok/alias", tarfile.SYMTYPE, "fine.txt"),
                    extra=[(_ti("ok/hard", tarfile.LNKTYPE, "ok/fine.txt"), None)])
    dest = D.safe_extract(tar, tmp_path / "dest")
    assert (dest / "ok" / "alias").is_symlink()
    assert (dest / "ok" / "alias").read_bytes() == b"fine"
    assert (dest / "ok" / "hard").read_bytes() == b"fine"
    zp = _zip_with(tmp_path / "good.zip", "ok/link", b"fine.txt", symlink=True)
    dest2 = D.safe_extract(zp, tmp_path / "dest2")
    assert (dest2 / "ok" / "link").is_symlink() and (dest2 / "ok" / "link").read_bytes() == b"fine"
    # existing destination: refused unless overwrite
    with pytest.raises(FileExistsError):
        D.safe_extract(zp, dest2)
    D.safe_extract(tar, dest2, overwrite=True)
    assert (dest2 / "ok" / "hard").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("mode,suffix", [("w:bz2", ".tar.bz2"), ("w:xz", ".tar.xz"), ("w", ".tar")])
def test_tar_compressions(tmp_path, mode, suffix):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f.txt").write_text("hello")
    arc = _tar_dir(src, tmp_path / f"a{suffix}", mode=mode)
    out = D.safe_extract(arc, tmp_path / "out")
    assert (out / "d" / "f.txt").read_text() == "hello"


def test_not_an_archive(tmp_path):
    f = tmp_path / "data.csv"
    f.write_text("a;b\n1;2\n")
    with pytest.raises(ValueError, match="neither a zip nor a tar"):
        D.safe_extract(f, tmp_path / "out")
    with pytest.raises(ValueError, match="neither a zip nor a tar"):
        D.fetch("cifar10", tmp_path / "raw", source=f)


# --------------------------------------------------------------------------------------------
# image-folder trees
# --------------------------------------------------------------------------------------------


def _check_cifar_folder_split(split: D.Split, n_per_class: int):
    assert split.x.shape == (10 * n_per_class, 32, 32, 3) and split.x.dtype == np.uint8
    assert split.y.dtype == np.int64 and split.mask is None
    # labels follow the official order, not the folder listing; red channel encodes the label
    np.testing.assert_array_equal(split.x[:, :, :, 0], np.broadcast_to(
        (20 * split.y)[:, None, None], split.x.shape[:3]))
    assert np.all(split.x[:, :, :, 1] == 100)
    np.testing.assert_array_equal(np.bincount(split.y, minlength=10), [n_per_class] * 10)


@pytest.mark.parametrize("layout", ["dir", "zip", "zip-top", "tar.gz", "tar.gz-top"])
def test_image_folder_sources(tmp_path, layout):
    tree = _make_cifar_folder(tmp_path / "tree")
    if layout == "dir":
        source = tree
    elif layout.startswith("zip"):
        source = _zip_dir(tree, tmp_path / "cifar.zip", top="cifar10" if "top" in layout else None)
    else:
        source = _tar_dir(tree, tmp_path / "cifar.tar.gz", top="cifar10" if "top" in layout else None)
    raw = tmp_path / "raw"
    root = D.fetch("cifar10", raw, source=source)
    assert (root / "train").is_dir() and (root / "test").is_dir()
    if layout == "dir":
        assert root == tree and not raw.exists()  # used in place, nothing copied
    else:
        assert raw in root.parents
    man = D.prepare("cifar10", tmp_path / "out", root, progress=False)
    assert man["source"]["kind"] == "image-folder"
    _check_cifar_folder_split(D.load_split(tmp_path / "out" / "train.npz"), 2)
    _check_cifar_folder_split(D.load_split(tmp_path / "out" / "test.npz"), 1)


def test_fetch_extracts_once(tmp_path, monkeypatch):
    tree = _make_cifar_folder(tmp_path / "tree", n_train=1, n_test=1, odd_size=False)
    arc = _zip_dir(tree, tmp_path / "c.zip", top="top")
    root1 = D.fetch("cifar10", tmp_path / "raw", source=arc, checksum=f"md5:{_md5(arc)}")

    def boom(*a, **k):
        raise AssertionError("extracted twice")

    monkeypatch.setattr(D, "safe_extract", boom)
    assert D.fetch("cifar10", tmp_path / "raw", source=arc) == root1
    monkeypatch.undo()
    # a different archive under the same name is extracted again
    time.sleep(0.01)
    _png(tree / "train" / "cat" / "extra.png")
    _zip_dir(tree, arc, top="top")
    root2 = D.fetch("cifar10", tmp_path / "raw", source=arc)
    assert (root2 / "train" / "cat" / "extra.png").is_file()


def _cifar10_archive(tmp_path: Path, seed: int) -> tuple[Path, tuple]:
    """cifar-10-python.tar (uncompressed) of random batches: same size whatever the seed."""
    src = tmp_path / f"src{seed}"
    train, test = _make_cifar10_pickles(src / "cifar-10-batches-py", np.random.default_rng(seed))
    arc = _tar_dir(src, tmp_path / f"cifar-10-python-{seed}.tar", mode="w")
    return arc, (train, test)


@pytest.mark.parametrize("mtime", ["older", "same"])
@pytest.mark.parametrize("checksum", [False, True])
def test_fetch_replaced_archive_yields_new_data(tmp_path, checksum, mtime):
    """An archive replaced at the same path by one of the same size and an older mtime
    (``cp -p``), or even the same mtime (``touch -r``, pinned build timestamps), is extracted
    again: the prepared data are the new archive's."""
    old, _ = _cifar10_archive(tmp_path, 0)
    new, (_, (x_new, y_new)) = _cifar10_archive(tmp_path, 1)
    assert old.stat().st_size == new.stat().st_size and old.read_bytes() != new.read_bytes()
    arc = tmp_path / "cifar-10-python.tar"
    os.replace(old, arc)
    st = arc.stat()
    raw = tmp_path / "raw"
    kw = {"checksum": f"md5:{_md5(arc)}"} if checksum else {}
    root = D.fetch("cifar10", raw, source=arc, **kw)
    D.prepare("cifar10", tmp_path / "out", root, progress=False)
    old_test = D.load_split(tmp_path / "out" / "test.npz")

    os.replace(new, arc)
    os.utime(arc, ns=(st.st_atime_ns, st.st_mtime_ns - (10**9 if mtime == "older" else 0)))
    kw = {"checksum": f"md5:{_md5(arc)}"} if checksum else {}
    root = D.fetch("cifar10", raw, source=arc, **kw)
    D.prepare("cifar10", tmp_path / "out", root, progress=False)
    new_test = D.load_split(tmp_path / "out" / "test.npz")
    np.testing.assert_array_equal(new_test.x, _hwc(x_new))
    np.testing.assert_array_equal(new_test.y, y_new)
    assert not np.array_equal(new_test.x, old_test.x)


def test_source_signature(tmp_path):
    from xaisec.workflow.plan import source_signature

    assert source_signature(None) is None
    assert source_signature(tmp_path / "nothing") == "missing"
    arc = tmp_path / "a.zip"
    arc.write_bytes(b"x" * 10)
    sig = source_signature(arc)
    assert sig == source_signature(str(arc))  # stable
    st = arc.stat()
    arc.write_bytes(b"y" * 11)
    os.utime(arc, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))  # older, other content
    assert source_signature(arc) != sig
    tree = _make_cifar_folder(tmp_path / "tree", n_train=1, n_test=1, odd_size=False)
    sig = source_signature(tree)
    assert sig.startswith("folder files=20 ")
    img = tree / "train" / "cat" / "0000.png"
    st = img.stat()
    dir_mtime = img.parent.stat().st_mtime_ns
    _png(img, color=(1, 2, 3))  # rewritten in place: the folder's own mtime does not change
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert img.parent.stat().st_mtime_ns == dir_mtime
    assert source_signature(tree) != sig


def test_read_image_folder_sorted_without_spec(tmp_path):
    for split in ("train", "test"):
        for name, color in (("zebra", 10), ("apple", 20), ("mango", 30)):
            _png(tmp_path / split / name / "a.jpg".replace(".jpg", ".png"), color=(color, 0, 0))
        # ppm images are read too
        Image.new("RGB", (32, 32), (40, 0, 0)).save(tmp_path / split / "apple" / "b.ppm")
    splits, names = D.read_image_folder(tmp_path, progress=False)
    assert names == ("apple", "mango", "zebra")
    np.testing.assert_array_equal(splits["train"].y, [0, 0, 1, 2])
    np.testing.assert_array_equal(splits["test"].x[:, 0, 0, 0], [20, 40, 30, 10])


def test_image_folder_errors(tmp_path):
    a = tmp_path / "a"
    _png(a / "train" / "cat" / "0.png")
    _png(a / "train" / "dog" / "0.png")
    _png(a / "test" / "cat" / "0.png")
    _png(a / "test" / "bird" / "0.png")
    with pytest.raises(ValueError, match=r"differ.*only in train \['dog'\].*only in test \['bird'\]"):
        D.read_image_folder(a, progress=False)
    b = tmp_path / "b"
    _png(b / "train" / "cat" / "0.png")
    (b / "test" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match="split 'test'.*empty"):
        D.read_image_folder(b, progress=False)
    with pytest.raises(ValueError, match="empty"), pytest.warns(UserWarning, match="1 of the 10"):
        D.prepare("cifar10", tmp_path / "out", b, progress=False)
    # a spec with a different number of classes and unrelated names
    c = tmp_path / "c"
    for split in ("train", "test"):
        _png(c / split / "foo" / "0.png")
    with pytest.raises(ValueError, match="1 class folders but the data set has 10"):
        D.read_image_folder(c, class_names=CIFAR10, progress=False)


def test_missing_source_names_config_key(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.zip.*data\.gtsrb\.source"):
        D.fetch("gtsrb", tmp_path / "raw", source=tmp_path / "nowhere.zip")


def test_source_checksum_mismatch(tmp_path):
    tree = _make_cifar_folder(tmp_path / "tree", n_train=1, n_test=1, odd_size=False)
    arc = _tar_dir(tree, tmp_path / "c.tar.gz")
    with pytest.raises(D.ChecksumError, match="c.tar.gz"):
        D.fetch("cifar10", tmp_path / "raw", source=arc, checksum="sha256:" + "0" * 64)
    assert not (tmp_path / "raw" / "c").exists()
    root = D.fetch("cifar10", tmp_path / "raw", source=arc, checksum="sha256:" + _sha256(arc))
    assert root == tmp_path / "raw" / "c"


def test_folder_without_data(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no cifar10 data found"):
        D.fetch("cifar10", tmp_path / "raw", source=tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no gtsrb data found"):
        D.find_data_root("gtsrb", tmp_path / "empty")


# --------------------------------------------------------------------------------------------
# GTSRB layout
# --------------------------------------------------------------------------------------------

# (class, width, height, x1, y1, x2, y2)
GT_TRAIN = [
    (0, 40, 30, 4, 3, 35, 26),
    (0, 29, 31, 5, 5, 23, 25),
    (1, 53, 54, 6, 5, 48, 49),
    (1, 64, 40, 10, 8, 50, 35),
    (2, 25, 25, 3, 3, 21, 21),
]
GT_TEST = [
    (2, 37, 45, 5, 6, 31, 38),
    (0, 40, 30, 4, 3, 35, 26),
    (1, 100, 60, 20, 10, 79, 49),
]
HDR = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"


def _expected_mask(w, h, x1, y1, x2, y2, s=32):
    """Resized pixels overlapping the scaled box extent [x1, x2 + 1) x [y1, y2 + 1)."""
    m = np.zeros((s, s), np.uint8)
    for r in range(s):
        for c in range(s):
            if c < (x2 + 1) * s / w and c + 1 > x1 * s / w and r < (y2 + 1) * s / h and r + 1 > y1 * s / h:
                m[r, c] = 1
    return m


def _make_gtsrb(root: Path, gt_csv_separate: bool = True, ppm_names: bool = True) -> Path:
    """Tiny official-layout GTSRB: PNG files, CSVs of class 1 and the test CSV say .ppm."""
    train_dir = root / "GTSRB" / "Final_Training" / "Images"
    counters: dict[int, int] = {}
    rows: dict[int, list[str]] = {}
    for c, w, h, x1, y1, x2, y2 in GT_TRAIN:
        i = counters.get(c, 0)
        counters[c] = i + 1
        d = train_dir / f"{c:05d}"
        _png(d / f"00000_{i:05d}.png", size=(w, h), color=(10 * c, 0, 0), box=(x1, y1, x2, y2))
        ext = ".ppm" if (ppm_names and c == 1) else ".png"
        rows.setdefault(c, []).append(f"00000_{i:05d}{ext};{w};{h};{x1};{y1};{x2};{y2};{c}\n")
    for c, lines in rows.items():
        (train_dir / f"{c:05d}" / f"GT-{c:05d}.csv").write_text(HDR + "".join(lines))
    test_dir = root / "GTSRB" / "Final_Test" / "Images"
    lines = []
    for i, (c, w, h, x1, y1, x2, y2) in enumerate(GT_TEST):
        _png(test_dir / f"{i:05d}.png", size=(w, h), color=(10 * c, 0, 0), box=(x1, y1, x2, y2))
        lines.append(f"{i:05d}{'.ppm' if ppm_names else '.png'};{w};{h};{x1};{y1};{x2};{y2};{c}\n")
    # the official test-images zip has a CSV without ClassId: a decoy that must be ignored
    (test_dir / "GT-final_test.test.csv").write_text(
        HDR.replace(";ClassId", "") + "".join(line.rsplit(";", 1)[0] + "\n" for line in lines))
    gt_dir = root if gt_csv_separate else root / "GTSRB" / "Final_Test"
    (gt_dir / "GT-final_test.csv").write_text(HDR + "".join(lines))
    return root


def _check_gtsrb(out_dir: Path):
    man = D.load_manifest(out_dir)
    assert man["has_masks"] and man["num_classes"] == 43
    tr, te = D.load_split(out_dir / "train.npz"), D.load_split(out_dir / "test.npz")
    for split, table in ((tr, GT_TRAIN), (te, GT_TEST)):
        assert split.x.shape == (len(table), 32, 32, 3)
        assert split.mask.shape == (len(table), 32, 32) and split.mask.dtype == np.uint8
        assert set(np.unique(split.mask)) <= {0, 1}
    np.testing.assert_array_equal(tr.y, [c for c, *_ in GT_TRAIN])  # class-by-class CSV order
    np.testing.assert_array_equal(te.y, [c for c, *_ in GT_TEST])
    for split, table in ((tr, GT_TRAIN), (te, GT_TEST)):
        for i, (c, w, h, x1, y1, x2, y2) in enumerate(table):
            np.testing.assert_array_equal(split.mask[i], _expected_mask(w, h, x1, y1, x2, y2))
            # the white box of the image lies on the mask after resizing, and fills its inside
            bright = split.x[i, :, :, 1] > 100
            assert bright.any() and np.all(split.mask[i][bright] == 1)
            inner = split.mask[i].astype(bool)
            inner[1:-1, 1:-1] &= (inner[:-2, 1:-1] & inner[2:, 1:-1] & inner[1:-1, :-2] & inner[1:-1, 2:])
            inner[[0, -1], :] = False
            inner[:, [0, -1]] = False
            assert np.all(split.x[i, :, :, 1][inner] > 200)
            assert split.x[i, 0, 0, 0] == 10 * c  # background colour (corner outside every box)
    counts = man["splits"]["train"]["class_counts"]
    assert counts["speed limit 20"] == 2 and counts["speed limit 30"] == 2
    assert counts["speed limit 50"] == 1 and counts["stop"] == 0
    assert man["splits"]["test"]["num_images"] == 3 and man["num_images"] == 8


def test_roi_mask_hand_computed():
    # W=40, H=30, box (4,3)-(35,26) at 32 px: the extent x [4, 36) -> [3.2, 28.8) covers
    # columns 3..28; y [3, 27) -> [3.2, 28.8) covers rows 3..28
    m = D.roi_masks(np.array([[4, 3, 35, 26]]), np.array([[40, 30]]), 32)[0]
    assert m.sum() == 26 * 26
    assert m[3, 3] == 1 and m[28, 28] == 1 and m[3, 28] == 1 and m[28, 3] == 1
    assert m[2, 3] == 0 and m[3, 2] == 0 and m[29, 28] == 0 and m[28, 29] == 0
    # W=64 -> scale exactly 1/2: box 8..23 -> [4, 12) -> columns 4..11 (no spill at the edge)
    m1 = D.roi_masks(np.array([[8, 8, 23, 23]]), np.array([[64, 64]]), 32)[0]
    assert np.argwhere(m1).min(0).tolist() == [4, 4] and np.argwhere(m1).max(0).tolist() == [11, 11]
    # degenerate and out-of-range boxes stay inside the image, at least one pixel
    m2 = D.roi_masks(np.array([[0, 0, 500, 0], [10, 10, 10, 10]]), np.array([[64, 64], [64, 64]]), 32)
    assert m2[0].sum() == 32 and m2[0][0].all()
    assert m2[1].sum() == 1 and m2[1][5, 5] == 1


@pytest.mark.parametrize("as_archive", [False, True])
def test_gtsrb_layout(tmp_path, as_archive):
    tree = _make_gtsrb(tmp_path / "gtsrb")
    source = _tar_dir(tree, tmp_path / "gtsrb.tar.gz") if as_archive else tree
    root = D.fetch("gtsrb", tmp_path / "raw", source=source)
    assert D.detect_layout(root) == "gtsrb"
    man = D.prepare("gtsrb", tmp_path / "out", root, progress=False)
    assert man["source"]["kind"] == "gtsrb"
    _check_gtsrb(tmp_path / "out")
    with np.load(tmp_path / "out" / "train.npz") as f:
        assert sorted(f.files) == ["mask", "x", "y"]


def test_gtsrb_official_download_layout(tmp_path):
    """The three official zips extracted side by side: the GT CSV sits apart from the images."""
    tree = _make_gtsrb(tmp_path / "t", gt_csv_separate=False, ppm_names=False)
    raw = tmp_path / "raw"
    (raw / "GTSRB_Final_Training_Images" / "GTSRB").mkdir(parents=True)
    (raw / "GTSRB_Final_Test_Images" / "GTSRB").mkdir(parents=True)
    (raw / "GTSRB_Final_Test_GT").mkdir(parents=True)
    gt, final_test = tree / "GTSRB", tree / "GTSRB" / "Final_Test"
    os.rename(gt / "Final_Training", raw / "GTSRB_Final_Training_Images" / "GTSRB" / "Final_Training")
    os.rename(final_test / "GT-final_test.csv", raw / "GTSRB_Final_Test_GT" / "GT-final_test.csv")
    os.rename(final_test, raw / "GTSRB_Final_Test_Images" / "GTSRB" / "Final_Test")
    root = D.find_data_root("gtsrb", raw)
    assert root == raw
    D.prepare("gtsrb", tmp_path / "out", root, progress=False)
    _check_gtsrb(tmp_path / "out")


def test_gtsrb_missing_test_labels(tmp_path):
    tree = _make_gtsrb(tmp_path / "g")
    (tree / "GT-final_test.csv").unlink()
    with pytest.raises(FileNotFoundError, match="GT-final_test.csv"):
        D.fetch("gtsrb", tmp_path / "raw", source=tree)
    with pytest.raises(FileNotFoundError, match="GT-final_test.csv"):
        D.read_gtsrb(tree, progress=False)


def test_gtsrb_missing_image(tmp_path):
    tree = _make_gtsrb(tmp_path / "g")
    next((tree / "GTSRB" / "Final_Test" / "Images").glob("00001.png")).unlink()
    with pytest.raises(FileNotFoundError, match="00001.ppm"):
        D.read_gtsrb(tree, progress=False)


@pytest.mark.parametrize("which", ["train", "test"])
@pytest.mark.parametrize("row", ["short", "not-int"])
def test_gtsrb_malformed_row_names_file_and_line(tmp_path, which, row):
    tree = _make_gtsrb(tmp_path / "g")
    if which == "train":  # class 0: header + 2 rows; the bad row is line 4
        csv_path = tree / "GTSRB" / "Final_Training" / "Images" / "00000" / "GT-00000.csv"
    else:  # header + 3 rows
        csv_path = tree / "GT-final_test.csv"
    lines = csv_path.read_text().splitlines(keepends=True)
    bad = "00000_00000.png;40;30\n" if row == "short" else "00000_00000.png;40;30;1;2;x;20;0\n"
    csv_path.write_text("".join(lines) + bad)
    with pytest.raises(ValueError) as exc:
        D.read_gtsrb(tree, progress=False)
    msg = str(exc.value)
    assert str(csv_path) in msg and f"line {len(lines) + 1}" in msg, msg
    assert ("Roi.X1" in msg) if row == "short" else ("Roi.X2 = 'x'" in msg)
    with pytest.raises(ValueError, match=f"line {len(lines) + 1}"):
        D.prepare("gtsrb", tmp_path / "out", tree, progress=False)


# --------------------------------------------------------------------------------------------
# CIFAR python pickles
# --------------------------------------------------------------------------------------------


def _cifar_batch(path: Path, n: int, rng, num_classes: int, label_key: bytes):
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size=n).tolist()
    d = {b"batch_label": b"batch", label_key: labels, b"data": data,
         b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
    if label_key == b"fine_labels":
        d[b"coarse_labels"] = [x // 5 for x in labels]
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)
    return data, np.asarray(labels)


def _make_cifar10_pickles(d: Path, rng):
    d.mkdir(parents=True)
    xs, ys = [], []
    for i in range(1, 6):
        x, y = _cifar_batch(d / f"data_batch_{i}", 2, rng, 10, b"labels")
        xs.append(x)
        ys.append(y)
    xt, yt = _cifar_batch(d / "test_batch", 3, rng, 10, b"labels")
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CIFAR10], b"num_vis": 3072}, f, protocol=2)
    return (np.concatenate(xs), np.concatenate(ys)), (xt, yt)


def _hwc(data):
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def test_cifar10_pickles_from_archive(tmp_path):
    rng = np.random.default_rng(0)
    (xtr, ytr), (xte, yte) = _make_cifar10_pickles(tmp_path / "src" / "cifar-10-batches-py", rng)
    arc = _tar_dir(tmp_path / "src", tmp_path / "cifar-10-python.tar.gz")
    root = D.fetch("cifar10", tmp_path / "raw", source=arc, checksum=f"md5:{_md5(arc)}")
    assert root.name == "cifar-10-batches-py"
    man = D.prepare("cifar10", tmp_path / "out", root, progress=False)
    assert man["source"]["kind"] == "cifar10-pickle"
    tr, te = D.load_split(tmp_path / "out" / "train.npz"), D.load_split(tmp_path / "out" / "test.npz")
    np.testing.assert_array_equal(tr.x, _hwc(xtr))
    np.testing.assert_array_equal(tr.y, ytr)
    np.testing.assert_array_equal(te.x, _hwc(xte))
    np.testing.assert_array_equal(te.y, yte)
    assert tr.mask is None and tr.y.dtype == np.int64
    # the pixel layout: channel-first rows -> HWC (red plane first)
    assert tr.x[0, 0, 1, 0] == xtr[0, 1] and tr.x[0, 0, 0, 2] == xtr[0, 2048]


def test_cifar100_pickles(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    xtr, ytr = _cifar_batch(d / "train", 7, rng, 100, b"fine_labels")
    xte, yte = _cifar_batch(d / "test", 4, rng, 100, b"fine_labels")
    with open(d / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [c.encode() for c in D.CIFAR100_CLASSES],
                     b"coarse_label_names": [b"x"] * 20}, f, protocol=2)
    assert D.find_data_root("cifar100", tmp_path) == d
    splits, names = D.read_cifar_pickles(d)
    assert names == D.CIFAR100_CLASSES
    np.testing.assert_array_equal(splits["train"].x, _hwc(xtr))
    np.testing.assert_array_equal(splits["test"].y, yte)
    man = D.prepare("cifar100", tmp_path / "out", tmp_path, progress=False)
    assert man["num_images"] == 11 and len(man["class_names"]) == 100
    # a cifar-100 tree is not cifar-10 data
    with pytest.raises(FileNotFoundError):
        D.find_data_root("cifar10", tmp_path)


def test_cifar_meta_mismatch(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    _make_cifar10_pickles(d, np.random.default_rng(0))
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"x"] * 10}, f)
    with pytest.raises(ValueError, match="differ from the official"):
        D.read_cifar_pickles(d)


class _Payload:
    """Unpickling this runs ``func(*args)``: what a crafted CIFAR batch would smuggle in."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("how", ["os.system", "builtins.exec", "nested", "protocol0"])
def test_cifar_crafted_batch_runs_no_code(tmp_path, how):
    d = tmp_path / "cifar-10-batches-py"
    _make_cifar10_pickles(d, np.random.default_rng(0))
    marker = tmp_path / "pwned"
    if how == "builtins.exec":
        payload, refused = _Payload(exec, f"open({str(marker)!r}, 'w').close()"), "builtins.exec"
    else:
        payload, refused = _Payload(os.system, f"touch '{marker}'"), f"{os.system.__module__}.system"
    batch = {b"data": payload, b"labels": [0]} if how == "nested" else payload
    with open(d / "data_batch_1", "wb") as f:
        pickle.dump(batch, f, protocol=0 if how == "protocol0" else pickle.HIGHEST_PROTOCOL)
    with pytest.raises(ValueError) as exc:
        D.read_cifar_pickles(d)
    msg = str(exc.value)
    assert str(d / "data_batch_1") in msg and f"refusing to load {refused}" in msg
    assert not marker.exists()
    with pytest.raises(ValueError, match="refusing to load"):
        D.prepare("cifar10", tmp_path / "out", d, progress=False)
    assert not marker.exists() and not (tmp_path / "out" / "manifest.json").exists()


def test_cifar_crafted_batch_in_archive_runs_no_code(tmp_path):
    """The reported case: a 'python version' archive whose data_batch_1 creates a file."""
    src = tmp_path / "src" / "cifar-10-batches-py"
    _make_cifar10_pickles(src, np.random.default_rng(0))
    marker = tmp_path / "pwned"
    with open(src / "data_batch_1", "wb") as f:
        pickle.dump(_Payload(os.system, f"touch '{marker}'"), f, protocol=2)
    arc = _tar_dir(tmp_path / "src", tmp_path / "cifar-10-python.tar.gz")
    root = D.fetch("cifar10", tmp_path / "raw", source=arc)
    with pytest.raises(ValueError, match=r"data_batch_1: refusing to load \w+\.system"):
        D.prepare("cifar10", tmp_path / "out", root, progress=False)
    assert not marker.exists()


def test_cifar_refuses_other_codecs(tmp_path):
    """_codecs.encode (protocol-2 bytes) is admitted for Latin-1 only."""
    path = tmp_path / "b"
    path.write_bytes(b"\x80\x02}q\x00C\x04dataq\x01c_codecs\nencode\nq\x02X\x01\x00\x00\x00xq\x03"
                     b"X\x05\x00\x00\x00rot13q\x04\x86q\x05Rq\x06s.")
    with pytest.raises(ValueError, match="not a CIFAR batch.*rot13"):
        D._unpickle(path)


@pytest.mark.parametrize("protocol", [0, 2, 4, pickle.HIGHEST_PROTOCOL])
def test_cifar_batch_pickles_load(tmp_path, protocol):
    """Legitimate batches (numpy arrays, numpy scalars, lists of ints and bytes) still load,
    whatever the protocol and memory layout of their arrays."""
    rng = np.random.default_rng(protocol)
    data = rng.integers(0, 256, size=(4, 3072), dtype=np.uint8)
    batch = {b"batch_label": b"training batch 1 of 5", b"labels": [1, 0, 9, 3],
             b"data": data, b"filenames": [b"a.png", b"b.png", b"c.png", b"d.png"],
             b"fortran": np.asfortranarray(data[:, :6]), b"strided": data[:, ::512],
             b"scalar": np.int64(7), b"name": "str"}
    path = tmp_path / "data_batch_1"
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=protocol)
    out = D._unpickle(path)
    assert out.keys() == batch.keys()
    for k in (b"data", b"fortran", b"strided"):
        np.testing.assert_array_equal(out[k], batch[k])
        assert out[k].dtype == np.uint8
    assert out[b"labels"] == [1, 0, 9, 3] and out[b"filenames"][2] == b"c.png"
    assert out[b"scalar"] == 7 and out[b"batch_label"] == b"training batch 1 of 5"


# --------------------------------------------------------------------------------------------
# download
# --------------------------------------------------------------------------------------------


def test_download_file_url(tmp_path, monkeypatch):
    src = tmp_path / "srv" / "payload.bin"
    src.parent.mkdir()
    src.write_bytes(np.random.default_rng(0).bytes(2_500_000))
    remote = D.Remote(src.as_uri(), "payload.bin", f"md5:{_md5(src)}")
    dest_dir = tmp_path / "dl"
    out = D.download(remote, dest_dir, progress=False)
    assert out == dest_dir / "payload.bin" and out.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in dest_dir.iterdir()) == ["payload.bin"]

    # already there and verified: no network access
    def no_net(*a, **k):
        raise AssertionError("downloaded again")

    monkeypatch.setattr(urllib.request, "urlopen", no_net)
    assert D.download(remote, dest_dir, progress=False) == out


def test_download_wrong_checksum_leaves_nothing(tmp_path):
    src = tmp_path / "payload.bin"
    src.write_bytes(b"x" * 1000)
    remote = D.Remote(src.as_uri(), "payload.bin", "sha256:" + "0" * 64)
    dest_dir = tmp_path / "dl"
    with pytest.raises(D.ChecksumError, match="payload.bin"):
        D.download(remote, dest_dir, progress=False)
    assert list(dest_dir.iterdir()) == []


def test_download_replaces_corrupt_file(tmp_path):
    src = tmp_path / "payload.bin"
    src.write_bytes(b"good data")
    dest_dir = tmp_path / "dl"
    dest_dir.mkdir()
    (dest_dir / "payload.bin").write_bytes(b"corrupt")
    remote = D.Remote(src.as_uri(), "payload.bin", f"sha256:{_sha256(src)}")
    assert D.download(remote, dest_dir, progress=False).read_bytes() == b"good data"


def test_download_no_network(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    remote = D.DATASETS["cifar10"].remotes[0]
    with pytest.raises(D.DownloadError, match=r"no network\? set data\.cifar10\.source"):
        D.fetch("cifar10", tmp_path / "raw")
    assert list((tmp_path / "raw").iterdir()) == []
    with pytest.raises(D.DownloadError, match="no network"):
        D.download(remote, tmp_path / "dl", progress=False)
    monkeypatch.undo()
    # a file:// URL to nothing fails the same way
    missing = D.Remote((tmp_path / "missing.tar.gz").as_uri(), "missing.tar.gz", "md5:" + "0" * 32)
    with pytest.raises(D.DownloadError, match="no network"):
        D.download(missing, tmp_path / "dl2", progress=False)
    assert list((tmp_path / "dl2").iterdir()) == []


def test_fetch_downloads_official_remotes(tmp_path, monkeypatch):
    """source=None: every remote is downloaded, verified, extracted, and the root located."""
    rng = np.random.default_rng(0)
    (xtr, _), _ = _make_cifar10_pickles(tmp_path / "srv" / "src" / "cifar-10-batches-py", rng)
    arc = _tar_dir(tmp_path / "srv" / "src", tmp_path / "srv" / "cifar-10-python.tar.gz")
    spec = dataclasses.replace(D.DATASETS["cifar10"], remotes=(
        D.Remote(arc.as_uri(), "cifar-10-python.tar.gz", f"md5:{_md5(arc)}"),))
    monkeypatch.setitem(D._STATIC_SPECS, "cifar10", spec)
    raw = tmp_path / "raw"
    root = D.fetch("cifar10", raw, progress=False)
    assert root == raw / "cifar-10-python" / "cifar-10-batches-py"
    assert (raw / "cifar-10-python.tar.gz").is_file()
    D.prepare("cifar10", tmp_path / "out", root, progress=False)
    np.testing.assert_array_equal(D.load_split(tmp_path / "out" / "train.npz").x, _hwc(xtr))
    # second call: verified file and extraction are reused
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("downloaded again"))
    monkeypatch.setattr(D, "safe_extract", lambda *a, **k: pytest.fail("extracted again"))
    assert D.fetch("cifar10", raw, progress=False) == root


def test_fetch_shapes_has_nothing_to_fetch(tmp_path):
    pytest.importorskip("xaisec.data.shapes")
    with pytest.raises(ValueError, match="generated"):
        D.fetch("shapes", tmp_path)


# --------------------------------------------------------------------------------------------
# prepare / load
# --------------------------------------------------------------------------------------------


def test_prepare_manifest_and_checksums(tmp_path):
    tree = _make_cifar_folder(tmp_path / "tree", n_train=3, n_test=2)
    out = tmp_path / "out"
    man = D.prepare("cifar10", out, tree, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "test.npz", "train.npz"]
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == man == D.load_manifest(out)
    assert man["dataset"] == "cifar10" and man["image_size"] == 32
    assert man["class_names"] == list(CIFAR10) and man["has_masks"] is False
    assert man["num_images"] == 50
    for split, n in (("train", 3), ("test", 2)):
        entry = man["splits"][split]
        assert entry["sha256"] == _sha256(out / f"{split}.npz")
        assert entry["num_images"] == 10 * n
        assert entry["class_counts"] == {c: n for c in CIFAR10}
        with np.load(out / f"{split}.npz") as f:
            assert sorted(f.files) == ["x", "y"]
            assert f["x"].dtype == np.uint8 and f["y"].dtype == np.int64
    D.verify_prepared(out)
    with open(out / "test.npz", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02")
    with pytest.raises(D.ChecksumError):
        D.verify_prepared(out)


def test_prepare_image_size(tmp_path):
    tree = _make_cifar_folder(tmp_path / "tree", n_train=1, n_test=1)
    man = D.prepare("cifar10", tmp_path / "out", tree, image_size=16, progress=False)
    assert man["image_size"] == 16
    assert D.load_split(tmp_path / "out" / "train.npz").x.shape == (10, 16, 16, 3)


def test_failed_prepare_leaves_no_manifest(tmp_path):
    tree = _make_cifar_folder(tmp_path / "tree", n_train=1, n_test=1)
    out = tmp_path / "out"
    D.prepare("cifar10", out, tree, progress=False)
    # break the tree: a test image that cannot be decoded
    (tree / "test" / "cat" / "0000.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot decode"):
        D.prepare("cifar10", out, tree, progress=False)
    assert not (out / "manifest.json").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    with pytest.raises(FileNotFoundError, match="prepare"):
        D.load_manifest(out)


def test_prepare_needs_raw_root(tmp_path):
    with pytest.raises(ValueError, match="fetch"):
        D.prepare("gtsrb", tmp_path / "out")


def test_prepare_shapes(tmp_path):
    shapes = pytest.importorskip("xaisec.data.shapes")
    spec = D.DATASETS["shapes"]
    assert spec.class_names == tuple(shapes.CLASS_NAMES) and spec.has_masks and not spec.remotes
    out = tmp_path / "shapes"
    man = D.prepare("shapes", out, shapes_train=24, shapes_test=12, seed=3, progress=False)
    assert man["num_images"] == 36 and man["has_masks"]
    assert man["source"]["seed_train"] == 3 and man["source"]["seed_test"] == 4
    tr, te = D.load_split(out / "train.npz"), D.load_split(out / "test.npz")
    assert tr.x.shape == (24, 32, 32, 3) and tr.mask.shape == (24, 32, 32)
    assert te.x.shape == (12, 32, 32, 3) and set(np.unique(te.mask)) <= {0, 1}
    assert sum(man["splits"]["train"]["class_counts"].values()) == 24
    x_again, _, _ = shapes.generate(24, 3)
    np.testing.assert_array_equal(tr.x, x_again)
    D.verify_prepared(out)


# --------------------------------------------------------------------------------------------
# real data (slow)
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_prepare_real_cifar10(tmp_path):
    archive = SHARED / "cifar10-jpeg.zip"
    if not archive.is_file():
        pytest.skip(f"{archive} not available")
    root = D.fetch("cifar10", tmp_path / "raw", source=archive)
    man = D.prepare("cifar10", tmp_path / "out", root, progress=False)
    assert man["splits"]["train"]["num_images"] == 50000
    assert man["splits"]["test"]["num_images"] == 10000
    assert set(man["splits"]["train"]["class_counts"].values()) == {5000}
    assert set(man["splits"]["test"]["class_counts"].values()) == {1000}
    assert man["class_names"] == list(CIFAR10)
    te = D.load_split(tmp_path / "out" / "test.npz")
    assert te.x.shape == (10000, 32, 32, 3) and 60 < te.x.mean() < 200
