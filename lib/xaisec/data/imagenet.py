"""ImageNet evaluation images with object masks, for the FGSM-XAI and EXIAA papers (the
classifiers: :mod:`xaisec.models.imagenet`).

Data (:func:`read_imagenet_folder`): images in class folders named by WordNet id (``n01440764``,
the ImageNet val layout after the usual ``valprep.sh``) or by class index (``0`` .. ``999``,
ImageNetV2's layout), an optional parallel mask tree with the same relative paths, resized
(shorter side to 256) and centre-cropped (224) as torchvision's evaluation transform does.
:func:`xaisec.data.datasets.prepare` handles ``"imagenet"`` through :func:`read_imagenet_root`
(layout ``<root>/images/<class>/*``, ``<root>/masks/<class>/*``,
``<root>/imagenet_class_index.json``; see there).
"""
from __future__ import annotations

import json
import os
import warnings
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from xaisec.data import common as D
from xaisec.models.imagenet import INPUT_SIZE, NUM_CLASSES, imagenet_categories

__all__ = [
    "CLASS_INDEX_FILE",
    "INPUT_SIZE",
    "find_imagenet_root",
    "load_class_index",
    "read_imagenet_folder",
    "read_imagenet_root",
]

CLASS_INDEX_FILE = "imagenet_class_index.json"


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

_WNID = re.compile(r"^n\d{8}$")


def load_class_index(class_index: str | os.PathLike | Mapping) -> dict[str, int]:
    """WordNet id -> class index from ``imagenet_class_index.json``'s format
    ``{"0": ["n01440764", "tench"], ...}`` (a path or the parsed mapping; it may list a
    subset of the classes)."""
    source = "class index"
    if not isinstance(class_index, Mapping):
        source = str(class_index)
        try:
            class_index = json.loads(Path(class_index).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read the class index {source}: {exc}") from exc
        if not isinstance(class_index, Mapping):
            raise ValueError(  # noqa: TRY004 (bad file content)
                f"{source} is not a JSON object {{\"0\": [\"n01440764\", \"tench\"], ...}}")
    out: dict[str, int] = {}
    for k, v in class_index.items():
        try:
            idx = int(k)
            wnid = str(v[0]) if isinstance(v, (list, tuple)) else str(v)
        except (ValueError, TypeError, IndexError):
            raise ValueError(f"{source}: entry {k!r}: {v!r} is not \"<index>\": "
                             "[\"<wnid>\", \"<name>\"]") from None
        if not 0 <= idx < NUM_CLASSES:
            raise ValueError(f"{source}: class index {idx} outside 0..{NUM_CLASSES - 1}")
        if wnid in out and out[wnid] != idx:
            raise ValueError(f"{source}: {wnid} listed under {out[wnid]} and {idx}")
        out[wnid] = idx
    return out


def _folder_labels(folders: list[str], class_index, strict: bool, root: Path) -> dict[str, int]:
    if all(f.isdigit() for f in folders):  # ImageNetV2: "0".."999"
        bad = [f for f in folders if int(f) >= NUM_CLASSES]
        if bad:
            raise ValueError(f"class folders {bad[:5]} under {root} are outside 0..{NUM_CLASSES - 1}")
        return {f: int(f) for f in folders}
    if any(f.isdigit() for f in folders):
        raise ValueError(f"class folders under {root} mix numbers and names: "
                         f"{[f for f in folders if f.isdigit()][:3]} and "
                         f"{[f for f in folders if not f.isdigit()][:3]}")
    if class_index is not None:
        index = load_class_index(class_index)
        unknown = [f for f in folders if f not in index]
        if unknown:
            raise ValueError(f"class folders {unknown[:5]} under {root} are not in the class index")
        return {f: index[f] for f in folders}
    if len(folders) != NUM_CLASSES or not all(_WNID.match(f) for f in folders):
        msg = (f"{len(folders)} class folders under {root} and no class index: labels are the "
               "positions in the sorted folder names, which are ImageNet's class indices only "
               f"when all {NUM_CLASSES} WordNet-id folders are present; pass class_index="
               f"<{CLASS_INDEX_FILE}> ({{\"0\": [\"n01440764\", \"tench\"], ...}})")
        if strict:
            raise ValueError(msg)
        warnings.warn(msg, stacklevel=3)
    return {f: i for i, f in enumerate(folders)}


def _resize_crop(im, resize: int | None, size: int, resample):
    """torchvision's Resize(resize) + CenterCrop(size) on a PIL image: the shorter side to
    ``resize`` (the longer one ``int(resize * long / short)``), then the centre crop with
    ``int(round((h - size) / 2))`` offsets."""
    w, h = im.size
    short = resize if resize is not None else size
    if min(w, h) != short:
        if w <= h:
            nw, nh = short, int(short * h / w)
        else:
            nw, nh = int(short * w / h), short
        im = im.resize((nw, nh), resample)
        w, h = nw, nh
    top, left = round((h - size) / 2.0), round((w - size) / 2.0)
    return im.crop((left, top, left + size, top + size))


def _mask_array(im) -> np.ndarray:
    """Nonzero = object: the value for single-band (L, 1, P, I) masks, any of R, G, B for
    colour masks (alpha ignored)."""
    a = np.asarray(im)
    if a.ndim == 3:
        a = a[..., :3].any(axis=-1) if a.shape[-1] >= 3 else a[..., 0]
    return (a != 0).astype(np.uint8)


def _mask_index(d: Path, cache: dict) -> dict[str, Path]:
    if d not in cache:
        found: dict[str, Path] = {}
        if d.is_dir():
            for p in sorted(d.iterdir(), key=lambda p: (p.suffix.lower() != ".png", p.name)):
                if p.is_file() and p.suffix.lower() in D.IMAGE_EXTENSIONS:
                    found.setdefault(p.stem, p)
        cache[d] = found
    return cache[d]


def read_imagenet_folder(
    root: str | os.PathLike,
    masks: str | os.PathLike | None = None,
    image_size: int = INPUT_SIZE,
    resize: int | None = 256,
    *,
    class_index: str | os.PathLike | Mapping | None = None,
    strict: bool = False,
    progress: bool = True,
) -> D.Split:
    """Read ImageNet-style images ``root/<class>/<file>`` into a :class:`xaisec.datasets.Split`.

    * Class folders named by WordNet id (``n01440764``): labels from ``class_index`` (a path to
      ``imagenet_class_index.json`` or its parsed dict ``{"0": ["n01440764", "tench"], ...}``);
      without it, the positions in the sorted folder names, which are ImageNet's indices only
      when all 1000 folders are there (otherwise a warning, or a ValueError with ``strict``).
      Folders named by number (``0`` .. ``999``, ImageNetV2) are the class indices.
    * ``masks``: a folder with the same relative paths, any image extension (``x.JPEG`` ->
      ``x.png``); nonzero = object. Every image must have its mask (FileNotFoundError naming
      the image otherwise); a mask of another size is resized to its image's size
      (nearest) when the aspect ratios agree, else ValueError.
    * Each image: RGB, the shorter side resized to ``resize`` (bilinear, antialiased; None:
      to ``image_size``), the centre ``image_size`` square cropped, as torchvision's ImageNet
      evaluation transform (Resize(256) + CenterCrop(224)). Masks: the same with nearest.

    Returns ``Split(x uint8 (N, S, S, 3), y int64 (N,), mask uint8 (N, S, S) in {0, 1} or
    None)``, images in class-index order, then sorted by file name.
    """
    from PIL import Image

    root = Path(root)
    if resize is not None and int(resize) < int(image_size):
        raise ValueError(f"resize ({resize}) must be >= image_size ({image_size})")
    if not root.is_dir():
        raise FileNotFoundError(f"ImageNet image folder {root} not found")
    folders = D._class_dirs(root)
    if not folders:
        raise ValueError(f"{root} has no class folders (<class>/<image>)")
    mapping = _folder_labels(folders, class_index, strict, root)
    mask_root = None if masks is None else Path(masks)
    if mask_root is not None and not mask_root.is_dir():
        raise FileNotFoundError(f"mask folder {mask_root} not found")

    paths: list[Path] = []
    labels: list[int] = []
    for f in sorted(folders, key=lambda f: (mapping[f], f)):
        files = D._list_images(root / f)
        paths += files
        labels += [mapping[f]] * len(files)
    if not paths:
        raise ValueError(f"no images under {root}/<class>/ ({', '.join(D.IMAGE_EXTENSIONS)})")
    mask_paths: list[Path] = []
    if mask_root is not None:
        cache: dict = {}
        for p in paths:
            rel = p.relative_to(root)
            m = _mask_index(mask_root / rel.parent, cache).get(p.stem)
            if m is None:
                raise FileNotFoundError(f"no mask for image {p}: expected "
                                        f"{mask_root / rel.with_suffix('.png')} (any image extension)")
            mask_paths.append(m)

    s = int(image_size)
    x = np.empty((len(paths), s, s, 3), dtype=np.uint8)
    mask = np.empty((len(paths), s, s), dtype=np.uint8) if mask_root is not None else None
    bar = D._tqdm(total=len(paths), desc=root.name, unit="img", disable=not progress,
                  mininterval=0.5)
    try:
        for i, p in enumerate(paths):
            try:
                with Image.open(p) as im:
                    im = im.convert("RGB")
                    size = im.size
                    x[i] = np.asarray(_resize_crop(im, resize, s, Image.BILINEAR))
            except OSError as exc:
                raise ValueError(f"cannot decode image {p}: {exc}") from exc
            if mask is not None:
                mp = mask_paths[i]
                try:
                    with Image.open(mp) as mim:
                        mim.load()
                        m = Image.fromarray(_mask_array(mim))
                except OSError as exc:
                    raise ValueError(f"cannot decode mask {mp}: {exc}") from exc
                if m.size != size:
                    if abs(m.size[0] / m.size[1] - size[0] / size[1]) > 0.01 * size[0] / size[1]:
                        raise ValueError(f"mask {mp} ({m.size[0]}x{m.size[1]}) does not match "
                                         f"image {p} ({size[0]}x{size[1]})")
                    m = m.resize(size, Image.NEAREST)
                mask[i] = np.asarray(_resize_crop(m, resize, s, Image.NEAREST))
            bar.update(1)
    finally:
        bar.close()
    return D.Split(x=x, y=np.asarray(labels, dtype=np.int64), mask=mask)


def _looks_like_class_tree(d: Path) -> bool:
    try:
        folders = D._class_dirs(d)
    except OSError:
        return False
    return bool(folders) and (all(_WNID.match(f) for f in folders)
                              or all(f.isdigit() for f in folders))


def find_imagenet_root(base: str | os.PathLike) -> Path:
    """The directory under ``base`` (or ``base``) holding ``images/<class>/`` (preferred), or
    else the first directory whose sub-folders are all WordNet ids or all numbers (a bare
    class tree, read without masks)."""
    base = Path(base)
    if not base.is_dir():
        raise FileNotFoundError(f"{base} is not a directory")
    dirs = list(D._walk_dirs(base, max_depth=4))
    for d in dirs:
        if (d / "images").is_dir() and _looks_like_class_tree(d / "images"):
            return d
    for d in dirs:
        if _looks_like_class_tree(d):
            return d
    raise FileNotFoundError(
        f"no ImageNet data found under {base}: expected images/<wnid or class index>/*.JPEG "
        f"(optionally masks/<same>/*.png and {CLASS_INDEX_FILE} next to images/)")


def read_imagenet_root(
    root: str | os.PathLike,
    masks: str | os.PathLike | None = None,
    *,
    image_size: int = INPUT_SIZE,
    progress: bool = True,
) -> tuple[dict[str, D.Split], tuple[str, ...], str]:
    """The ``"imagenet"`` data set for :func:`xaisec.datasets.prepare`.

    Layout of ``root`` (what ``data.imagenet.source`` points to, found by
    :func:`find_imagenet_root`)::

        root/images/<wnid or 0..999>/<name>.JPEG     the evaluation images
        root/masks/<wnid or 0..999>/<name>.png       optional: object masks, same relative paths
        root/imagenet_class_index.json               optional: wnid -> class index

    (``root`` may also be a bare class tree; then no masks.) ``masks`` overrides
    ``root/masks``. Labels must be ImageNet's class indices: numbered folders, a class index
    file, or all 1000 WordNet-id folders (ValueError otherwise). Images are resized (shorter
    side to ``round(image_size * 256 / 224)``) and centre-cropped to ``image_size``. All
    images form the ``test`` split (ImageNet has no training here: the models are pretrained).
    Returns ``({"test": split}, the 1000 category names, "imagenet-folder")``.
    """
    root = Path(root)
    images = root / "images" if (root / "images").is_dir() else root
    if masks is None and images != root and (root / "masks").is_dir():
        masks = root / "masks"
    class_index = root / CLASS_INDEX_FILE
    split = read_imagenet_folder(
        images, masks, image_size=image_size, resize=round(image_size * 256 / 224),
        class_index=class_index if class_index.is_file() else None, strict=True,
        progress=progress)
    return {"test": split}, imagenet_categories(), "imagenet-folder"
