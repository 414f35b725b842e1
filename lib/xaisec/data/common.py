"""The pieces every data reader shares (the split in memory, image listing, directory walks,
progress bars): :mod:`xaisec.data.datasets` and :mod:`xaisec.data.imagenet` both build on
them, so the ImageNet reader does not import the module that dispatches to it."""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp")
_SKIP_DIRS = {"__MACOSX"}


@dataclass
class Split:
    """One split in memory: images (N, H, W, 3) uint8, labels (N,) int64, masks (N, H, W) uint8
    in {0, 1} or None."""

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])


def _tqdm(**kwargs: Any):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return _NoBar()
    return tqdm(**kwargs)


class _NoBar:  # pragma: no cover - used only without tqdm
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _walk_dirs(base: Path, max_depth: int) -> Iterator[Path]:
    """Breadth-first directories under ``base`` (itself first), skipping hidden/temp ones."""
    level = [base]
    for _ in range(max_depth + 1):
        nxt: list[Path] = []
        for d in level:
            yield d
            try:
                with os.scandir(d) as it:
                    subs = sorted(e.name for e in it if e.is_dir(follow_symlinks=True))
            except OSError:
                continue
            nxt.extend(d / s for s in subs if not s.startswith(".") and s not in _SKIP_DIRS)
        level = nxt
        if not level:
            return


def _list_images(d: Path) -> list[Path]:
    with os.scandir(d) as it:
        names = sorted(e.name for e in it
                       if e.is_file() and not e.name.startswith(".")
                       and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS)
    return [d / n for n in names]


def _class_dirs(split_dir: Path) -> list[str]:
    with os.scandir(split_dir) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith(".")
                      and e.name not in _SKIP_DIRS)
