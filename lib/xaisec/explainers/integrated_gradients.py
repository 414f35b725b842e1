"""Captum IntegratedGradients from a black image (EXIAA)."""
from __future__ import annotations

import torch
from torch import nn

from xaisec.explainers.base import ChunkedExplainer

__all__ = ["IntegratedGradients"]


class IntegratedGradients(ChunkedExplainer):
    """Captum IntegratedGradients from a zero (black) baseline, ``n_steps`` (50) Gauss-Legendre
    steps; ``internal_batch_size`` bounds the ``chunk x n_steps`` expansion. Completeness: the
    attributions of an image sum to ``f_t(x) - f_t(0)`` up to the integration error.

    Config: ``exiaa.ig`` (``n_steps``, ``internal_batch_size``)."""

    name = "ig"

    def __init__(
        self,
        model: nn.Module,
        n_steps: int = 50,
        internal_batch_size: int | None = None,
        batch_size: int | None = None,
        method: str = "gausslegendre",
    ):
        super().__init__(model, batch_size)
        self.n_steps = int(n_steps)
        self.internal_batch_size = internal_batch_size
        self.method = method

    def _attribute_chunk(self, x, t):
        from captum.attr import IntegratedGradients as _IG

        return _IG(self.model).attribute(
            x,
            baselines=torch.zeros_like(x),
            target=t,
            n_steps=self.n_steps,
            method=self.method,
            internal_batch_size=self.internal_batch_size,
        )
