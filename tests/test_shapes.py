"""Tests for the synthetic ``shapes`` data set (xaisec.data.shapes)."""

from __future__ import annotations

import numpy as np
import pytest

from xaisec.data import shapes as shapes

C = shapes.NUM_CLASSES


@pytest.fixture(scope="module")
def data():
    return shapes.generate(600, seed=3)


def test_class_names():
    assert len(shapes.CLASS_NAMES) >= 10
    assert len(set(shapes.CLASS_NAMES)) == len(shapes.CLASS_NAMES)
    assert shapes.NUM_CLASSES == len(shapes.CLASS_NAMES)
    assert all(isinstance(c, str) and c for c in shapes.CLASS_NAMES)


def test_shapes_dtypes_ranges(data):
    images, labels, masks = data
    assert images.shape == (600, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (600,) and labels.dtype == np.int64
    assert masks.shape == (600, 32, 32) and masks.dtype == np.uint8
    assert set(np.unique(masks)) <= {0, 1}
    assert labels.min() >= 0 and labels.max() < C
    # images use a good part of the dynamic range
    assert images.min() < 30 and images.max() > 225


@pytest.mark.parametrize("size", [24, 64])
def test_other_image_sizes(size):
    images, labels, masks = shapes.generate(2 * C, seed=1, image_size=size)
    assert images.shape == (2 * C, size, size, 3)
    assert masks.shape == (2 * C, size, size)
    frac = masks.mean(axis=(1, 2))
    assert frac.min() > 0.03 and frac.max() < 0.6


def test_empty_and_tiny():
    images, labels, masks = shapes.generate(0, seed=0)
    assert images.shape == (0, 32, 32, 3) and labels.shape == (0,) and masks.shape == (0, 32, 32)
    images, labels, masks = shapes.generate(1, seed=0)
    assert images.shape == (1, 32, 32, 3) and masks[0].any()


def test_balanced_and_shuffled(data):
    _, labels, _ = data
    counts = np.bincount(labels, minlength=C)
    assert (counts == 600 // C).all()
    assert not np.array_equal(labels, np.arange(600) % C)
    _, labels2, _ = shapes.generate(23, seed=0)
    counts2 = np.bincount(labels2, minlength=C)
    assert counts2.max() - counts2.min() <= 1


def test_deterministic():
    a = shapes.generate(50, seed=7)
    b = shapes.generate(50, seed=7)
    for x, y in zip(a, b):
        assert x.tobytes() == y.tobytes()
    c = shapes.generate(50, seed=8)
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[2], c[2])


def test_masks_cover_reasonable_area_inside_image(data):
    _, labels, masks = data
    frac = masks.mean(axis=(1, 2))
    assert frac.min() >= 0.04, frac.min()
    assert frac.max() <= 0.6, frac.max()
    # the object lies fully inside the image: no mask pixel on the border
    border = masks[:, 0].sum() + masks[:, -1].sum() + masks[:, :, 0].sum() + masks[:, :, -1].sum()
    assert border == 0
    # every class has reasonably sized objects on average
    for k in range(C):
        assert 0.06 < frac[labels == k].mean() < 0.35, shapes.CLASS_NAMES[k]


def test_masks_are_single_objects(data):
    from scipy import ndimage

    _, labels, masks = data
    n_comp = np.array([ndimage.label(m)[1] for m in masks])
    assert (n_comp == 1).mean() > 0.98
    # rings keep a visible hole: the background inside is a separate region
    ring = shapes.CLASS_NAMES.index("ring")
    holes = [ndimage.label(1 - m)[1] for m in masks[labels == ring]]
    assert np.mean(np.array(holes) >= 2) > 0.95


def test_objects_contrast_with_background(data):
    images, _, masks = data
    x = images.astype(np.float64)
    m = masks[..., None].astype(np.float64)
    fg = (x * m).sum((1, 2)) / m.sum((1, 2))
    bg = (x * (1 - m)).sum((1, 2)) / (1 - m).sum((1, 2))
    dist = np.linalg.norm(fg - bg, axis=1)
    assert np.mean(dist > 40) > 0.95, np.percentile(dist, [1, 5, 50])


def test_edges_are_antialiased(data):
    # supersampling yields intermediate colours along object edges, so the
    # number of distinct colours per image is well above a 2-colour render
    images, _, _ = data
    uniq = [len(np.unique(im.reshape(-1, 3), axis=0)) for im in images[:20]]
    assert min(uniq) > 50


def test_backgrounds_are_varied(data):
    images, _, masks = data
    bgmask = masks == 0
    std = np.array([im[b].std(axis=0).mean() for im, b in zip(images, bgmask)])
    # some backgrounds are (nearly) flat, many are strongly structured
    assert (std < 20).mean() > 0.08
    assert (std > 30).mean() > 0.3
    mean_col = np.array([im[b].mean(axis=0) for im, b in zip(images, bgmask)])
    assert mean_col.std(axis=0).min() > 20


def _ridge_accuracy(feat_tr, y_tr, feat_te, y_te, lam):
    mu, sd = feat_tr.mean(0), feat_tr.std(0) + 1e-6
    a, b = (feat_tr - mu) / sd, (feat_te - mu) / sd
    w = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ np.eye(C)[y_tr])
    return float(((b @ w).argmax(1) == y_te).mean())


def _colour_features(images):
    x = images.astype(np.float64) / 255
    q = np.minimum((x * 4).astype(int), 3)
    idx = (q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]).reshape(len(x), -1)
    hist = np.stack([np.bincount(i, minlength=64) for i in idx]) / idx.shape[1]
    return np.concatenate([hist, x.mean((1, 2)), x.std((1, 2))], axis=1)


def test_colour_is_not_a_shortcut():
    """Linear models on colour statistics, or on raw pixels, stay near chance."""
    xtr, ytr, _ = shapes.generate(2000, seed=21)
    xte, yte, _ = shapes.generate(1000, seed=22)
    acc_col = _ridge_accuracy(_colour_features(xtr), ytr, _colour_features(xte), yte, 1.0)
    assert acc_col < 0.17, acc_col
    raw = lambda a: a.reshape(len(a), -1).astype(np.float64) / 255  # noqa: E731
    acc_raw = _ridge_accuracy(raw(xtr), ytr, raw(xte), yte, 1000.0)
    assert acc_raw < 0.2, acc_raw


def test_render_example_grid(tmp_path):
    out = shapes.render_example_grid(tmp_path / "sub" / "grid.png", n_per_class=2, seed=0)
    assert out.exists() and out.stat().st_size > 1000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _train_small_cnn(n_train, n_test, epochs, seed=0):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    xtr, ytr, _ = shapes.generate(n_train, seed=101)
    xte, yte, _ = shapes.generate(n_test, seed=102)

    def prep(a):
        t = torch.from_numpy(a).permute(0, 3, 1, 2).float().div(255)
        return (t - 0.5) / 0.25

    xtr_t, xte_t = prep(xtr), prep(xte)
    ytr_t, yte_t = torch.from_numpy(ytr), torch.from_numpy(yte)
    net = nn.Sequential(
        nn.Conv2d(3, 32, 5, padding=2), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 8 * 8, C),
    )
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(n_train, generator=g)
        for i in range(0, n_train, 64):
            b = perm[i : i + 64]
            loss = nn.functional.cross_entropy(net(xtr_t[b]), ytr_t[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        return float((net(xte_t).argmax(1) == yte_t).float().mean())


@pytest.mark.slow
def test_small_cnn_learns_shapes():
    acc = _train_small_cnn(n_train=6000, n_test=1000, epochs=4)
    print(f"small CNN test accuracy: {acc:.3f}")
    assert acc > 0.5, acc


@pytest.mark.bench
def test_bench_generate_10k():
    import time

    t0 = time.perf_counter()
    shapes.generate(10_000, seed=0)
    dt = time.perf_counter() - t0
    print(f"shapes.generate(10000): {dt:.2f} s")
    assert dt < 30
