"""Layer-wise weight similarity between an original and an attacked model (CFN paper, Section 3.1,
Figures 3, 10 and 11): linear Centered Kernel Alignment (CKA) and Spearman's rank correlation.

A layer's weight tensor ``W`` (out, ...) is read as a matrix with one row per output unit
(filter) and one column per input weight (``in x kh x kw`` for convolutions); vectors
(BatchNorm gamma and beta, biases) as single columns.

* Linear CKA (Kornblith et al. 2019) of ``X`` and ``Y`` (n x p, n x q), columns centred:
  ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)``; 1 for identical matrices, invariant to
  orthogonal transformations and isotropic scaling of either matrix. Computed through the
  n x n Gram matrices when n < p (same value, less memory).
* Spearman's rank correlation of the flattened weights (Pearson correlation of their ranks,
  ties averaged).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata

__all__ = ["linear_cka", "spearman", "weight_matrix", "compare_state_dicts"]


def weight_matrix(w) -> np.ndarray:
    """(out, rest) float64 matrix of a weight tensor; 1-D tensors become one column."""
    a = w.detach().cpu().double().numpy() if isinstance(w, torch.Tensor) else np.asarray(w, float)
    if a.ndim == 0:
        raise ValueError("a scalar has no weight matrix")
    return a.reshape(-1, 1) if a.ndim == 1 else a.reshape(a.shape[0], -1)


def linear_cka(x, y) -> float:
    """Linear CKA of two matrices with the same number of rows (samples)."""
    x, y = weight_matrix(x), weight_matrix(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same number of rows, got {x.shape} and {y.shape}")
    x = x - x.mean(0, keepdims=True)
    y = y - y.mean(0, keepdims=True)
    if x.shape[0] < max(x.shape[1], y.shape[1]):  # Gram form: <K, L>_F / (||K|| ||L||)
        k, l_ = x @ x.T, y @ y.T
        num, den = (k * l_).sum(), np.linalg.norm(k) * np.linalg.norm(l_)
    else:
        num = np.linalg.norm(y.T @ x) ** 2
        den = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(num / den) if den > 0 else float("nan")


def spearman(x, y) -> float:
    """Spearman's rank correlation of two equally sized weight tensors (flattened)."""
    a, b = weight_matrix(x).ravel(), weight_matrix(y).ravel()
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def compare_state_dicts(original: dict, attacked: dict, min_numel: int = 2) -> pd.DataFrame:
    """CKA and Spearman per learnable tensor present in both state dicts (weights, biases,
    BatchNorm gamma/beta; running statistics and counters are skipped), in model order."""
    rows = []
    for name, w0 in original.items():
        if name not in attacked or not torch.is_floating_point(w0) or w0.numel() < min_numel:
            continue
        if name.endswith(("running_mean", "running_var", "num_batches_tracked")) \
                or name.startswith("normalize."):
            continue
        w1 = attacked[name]
        if w1.shape != w0.shape:
            raise ValueError(f"{name}: shapes differ, {tuple(w0.shape)} vs {tuple(w1.shape)}")
        kind = "bn" if ".bn" in name or name.startswith("bn") else "conv/linear"
        rows.append({"layer": name, "kind": kind, "numel": int(w0.numel()),
                     "cka": linear_cka(w0, w1),
                     "spearman": spearman(w0, w1)})
    return pd.DataFrame(rows)
