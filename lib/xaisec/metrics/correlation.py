"""Per-sample comparisons of explanations, batched over samples (no Python loop per sample)."""
from __future__ import annotations

import numpy as np
from scipy import stats


def rankdata_rows(a: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank) along the last axis."""
    return stats.rankdata(a, method="average", axis=-1)


def spearman_rows(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spearman rank correlation of each row of ``a`` with the same row of ``b``, and its
    two-sided p-value (t distribution with n - 2 degrees of freedom, as scipy.stats.spearmanr).

    ``a``, ``b``: (N, ...) arrays, flattened per row. Rows that are constant get rho = nan.
    """
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    n = a.shape[1]
    ra, rb = rankdata_rows(a), rankdata_rows(b)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra * ra).sum(1) * (rb * rb).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ra * rb).sum(1) / den
        rho = np.clip(rho, -1.0, 1.0)
        t = rho * np.sqrt((n - 2) / ((1.0 - rho) * (1.0 + rho)))
    p = 2 * stats.t.sf(np.abs(t), n - 2)
    p = np.where(np.abs(rho) == 1.0, 0.0, p)
    return rho, p
