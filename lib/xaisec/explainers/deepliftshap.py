"""Captum DeepLiftShap over a baseline distribution (EXIAA)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from xaisec.explainers.base import ChunkedExplainer

__all__ = ["DeepLiftShap"]


class DeepLiftShap(ChunkedExplainer):
    """Captum DeepLiftShap: DeepLift (rescale rule) averaged over a baseline distribution.

    ``baselines``: a tensor (K, 3, H, W) of baseline images, K >= 2 (Captum requires a
    distribution). Default: ``n_baselines`` (10) images uniform in [0, 1], drawn with a local
    generator seeded by ``seed`` (same baselines on every call and device), built at the first
    call for the input's size. Each chunk of ``batch_size`` (default 16) images is expanded by K.
    Summation to delta: an image's attributions sum to ``f_t(x) - mean_k f_t(b_k)``.

    Caveats: DeepLift's rule is applied at the nonlinearity *modules* Captum knows (nn.ReLU,
    Softplus, ...), each of which must be called once per forward pass and not in place;
    ResNet-20 and VGG-13 here use a separate non-inplace nn.ReLU per use, so this holds. Linear
    pieces (convolutions, BatchNorm in eval mode, the input normalisation, the option-A shortcut's
    slicing and padding, the residual ``out + shortcut`` written as a plain ``+``, average
    pooling) need no rule: gradients propagate the multipliers exactly, so the residual add is
    fine (checked by the summation-to-delta test). Custom activations such as
    :class:`xaisec.explainers.SmoothReLU` are not recognised and fall back to their gradient.

    Config: ``exiaa.deepliftshap`` (``n_baselines``, ``seed``, ``batch_size``).
    """

    name = "deepliftshap"

    def __init__(
        self,
        model: nn.Module,
        baselines: Tensor | None = None,
        n_baselines: int = 10,
        seed: int = 0,
        batch_size: int | None = 16,
        multiply_by_inputs: bool = True,
    ):
        super().__init__(model, batch_size)
        if baselines is not None:
            if not isinstance(baselines, Tensor) or baselines.dim() != 4 or baselines.shape[0] < 2:
                raise ValueError("baselines must be a tensor (K, C, H, W) with K >= 2")
            baselines = baselines.detach()
        elif int(n_baselines) < 2:
            raise ValueError("n_baselines must be >= 2")
        self.baselines = baselines
        self.n_baselines = int(n_baselines)
        self.seed = int(seed)
        self.multiply_by_inputs = multiply_by_inputs
        self._bl: Tensor | None = None

    def _begin(self, x):
        if self.baselines is None:
            shape = (self.n_baselines, *x.shape[1:])
            if self._bl is None or self._bl.shape != shape:
                g = torch.Generator().manual_seed(self.seed)
                self._bl = torch.rand(shape, generator=g)
            bl = self._bl
        else:
            bl = self.baselines
            if bl.shape[1:] != x.shape[1:]:
                raise ValueError(f"baselines {tuple(bl.shape)} do not match inputs {tuple(x.shape)}")
        self._cur = bl.to(device=x.device, dtype=x.dtype)

    def _attribute_chunk(self, x, t):
        from captum.attr import DeepLiftShap as _DLS

        return _DLS(self.model, multiply_by_inputs=self.multiply_by_inputs).attribute(
            x, baselines=self._cur, target=t
        )
