import numpy as np
import pytest
import torch

from xaisec.metrics.localization import aggregate, binarize_top, iou, minmax, rmse, score


def _square(r, c, size=2, shape=(4, 4)):
    m = np.zeros(shape, dtype=bool)
    m[r:r + size, c:c + size] = True
    return m


def test_iou_hand_values():
    a = _square(0, 0)            # 4 px
    b = _square(1, 1)            # 4 px, overlap 1 px -> union 7
    c = _square(0, 1)            # overlap with a: 2 px -> union 6
    out = iou(np.stack([a, a, a]), np.stack([b, c, a]))
    np.testing.assert_allclose(out, [1 / 7, 2 / 6, 1.0])


def test_iou_empty_is_nan_and_one_empty_is_zero():
    z = np.zeros((1, 4, 4), bool)
    assert np.isnan(iou(z, z)[0])
    assert iou(z, _square(0, 0)[None])[0] == 0.0


def test_rmse_hand_values():
    a = _square(0, 0).astype(float)[None]
    b = _square(1, 1).astype(float)[None]
    # 6 differing pixels out of 16
    np.testing.assert_allclose(rmse(a, b), [np.sqrt(6 / 16)])
    half = np.full((1, 4, 4), 0.5)
    np.testing.assert_allclose(rmse(half, np.zeros((1, 4, 4))), [0.5])


def test_rmse_identical_and_complementary():
    m = _square(1, 1)[None]
    assert rmse(m.astype(float), m.astype(float))[0] == 0.0
    assert rmse(m.astype(float), (~m).astype(float))[0] == 1.0


def test_binarize_top_counts_distinct():
    rng = np.random.default_rng(0)
    maps = np.stack([rng.permutation(100).reshape(10, 10) for _ in range(3)])
    out = binarize_top(maps, 0.15)
    assert out.sum(axis=(1, 2)).tolist() == [15, 15, 15]
    # the kept pixels are exactly the 15 largest values (85..99)
    assert (maps[out] >= 85).all()
    assert binarize_top(maps, 0.5).sum(axis=(1, 2)).tolist() == [50, 50, 50]


def test_binarize_top_ties():
    const = np.full((1, 4, 4), 3.0)
    assert binarize_top(const).all()
    # 16 px: 12 zeros and 4 ones -> 85th pct is 1, all four ones kept (25% > 15%)
    m = np.zeros((1, 4, 4))
    m[0, :1] = 1.0
    assert binarize_top(m).sum() == 4


def test_minmax_and_aggregate():
    m = np.array([[[1.0, 3.0], [2.0, 5.0]], [[7.0, 7.0], [7.0, 7.0]]])
    np.testing.assert_allclose(minmax(m), [[[0, 0.5], [0.25, 1]], [[0, 0], [0, 0]]])
    x = np.zeros((1, 3, 2, 2))
    x[0, 0, 0, 0] = -4.0
    x[0, 2, 0, 0] = 2.0
    x[0, 1, 1, 1] = 1.0
    np.testing.assert_allclose(aggregate(x), [[[4, 0], [0, 1]]])
    assert aggregate(m).shape == (2, 2, 2)


def test_score_batch_equals_per_sample():
    rng = np.random.default_rng(1)
    maps = rng.random((5, 3, 8, 8))
    masks = (rng.random((5, 8, 8)) > 0.7).astype(np.uint8)
    batch = score(maps, masks)
    for i in range(5):
        one = score(maps[i:i + 1], masks[i:i + 1])
        np.testing.assert_allclose(batch["iou"][i], one["iou"][0])
        np.testing.assert_allclose(batch["rmse"][i], one["rmse"][0])


def test_score_binary_and_torch():
    a = _square(0, 0)[None]
    b = _square(1, 1)[None]
    out = score(torch.from_numpy(a.astype(np.float32)), torch.from_numpy(b), binary=True)
    np.testing.assert_allclose(out["iou"], [1 / 7])
    np.testing.assert_allclose(out["rmse"], [np.sqrt(6 / 16)])
    # identical binary map scores perfectly
    out = score(a, a.astype(np.uint8), binary=True)
    assert out["iou"][0] == 1.0 and out["rmse"][0] == 0.0


def test_score_continuous_hand_value():
    # map with 100 distinct values; top 15 are the last 15 pixels in row-major order
    m = np.arange(100, dtype=float).reshape(1, 10, 10)
    gt = np.zeros((1, 10, 10), bool)
    gt.reshape(-1)[85:] = True
    out = score(m, gt)
    assert out["iou"][0] == 1.0


def test_shape_mismatch():
    with pytest.raises(ValueError, match=r"\(2, 4, 4\).*\(2, 5, 5\)"):
        score(np.zeros((2, 4, 4)), np.zeros((2, 5, 5), bool))
    with pytest.raises(ValueError):
        iou(np.zeros((1, 4, 4), bool), np.zeros((2, 4, 4), bool))
