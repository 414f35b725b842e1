"""Input transforms: the feature squeezers of Xu, Evans and Qi, "Feature Squeezing: Detecting
Adversarial Examples in Deep Neural Networks" (NDSS 2018), the AdvEdge paper's median
smoothing (MS) and bit squeezing (BS) defenses.

Both take images in [0, 1] (any float dtype, any device, batched) and return the squeezed
images with the same shape, dtype and device. The AdvEdge paper gives no settings: the window
size and bit depth are required arguments.
"""
from __future__ import annotations

import torch
from torch import nn


def _check_images(x: torch.Tensor, dims: int | None = None) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"images must be a floating-point tensor in [0, 1], got "
                         f"{getattr(x, 'dtype', type(x).__name__)}")
    if dims is not None and x.dim() != dims:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(x.shape)}")


def _reflect_index(n: int, before: int, after: int, device) -> torch.Tensor:
    """Indices of a length-``n`` axis padded by ``before``/``after`` with scipy.ndimage's
    ``mode="reflect"`` (half-sample symmetric: ``d c b a | a b c d | d c b a``), valid for any
    pad width (the pattern repeats with period ``2 n``)."""
    i = torch.arange(-before, n + after, device=device) % (2 * n)
    return torch.where(i < n, i, 2 * n - 1 - i)


def median_smoothing(x: torch.Tensor, size: int) -> torch.Tensor:
    """Median over a ``size`` x ``size`` window, per image and channel.

    Matches ``scipy.ndimage.median_filter(x, size=(1, 1, size, size), mode="reflect")``
    exactly, also for even sizes: the window of output pixel ``i`` covers inputs
    ``i - size // 2 ... i - size // 2 + size - 1``, and of an even number of values the upper
    of the two middle ones is taken (scipy's rank ``size**2 // 2``), so 2 x 2 smoothing (Xu et
    al.'s usual choice) behaves as there. Batched via ``unfold``; differentiable (the gradient
    reaches the selected pixel), which adaptive attacks can use.
    """
    _check_images(x, dims=4)
    if isinstance(size, bool) or int(size) != size or size < 1:
        raise ValueError(f"median window size must be an integer >= 1, got {size!r}")
    k = int(size)
    h, w = x.shape[-2:]
    before, after = k // 2, k - 1 - k // 2
    rows = _reflect_index(h, before, after, x.device)
    cols = _reflect_index(w, before, after, x.device)
    padded = x.index_select(2, rows).index_select(3, cols)
    windows = padded.unfold(2, k, 1).unfold(3, k, 1)          # (N, C, H, W, k, k), a view
    windows = windows.reshape(*windows.shape[:4], k * k)
    return windows.kthvalue(k * k // 2 + 1, dim=-1).values


def bit_squeezing(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Bit-depth reduction to ``bits`` bits: ``round(x * (2^bits - 1)) / (2^bits - 1)``
    (round half to even, as ``numpy.rint``). 8 bits leave 8-bit images (values k / 255)
    unchanged. Its gradient is zero almost everywhere."""
    _check_images(x)
    if isinstance(bits, bool) or int(bits) != bits or not 1 <= bits <= 8:
        raise ValueError(f"bits must be an integer in 1..8, got {bits!r}")
    levels = float(2 ** int(bits) - 1)
    return torch.round(x * levels) / levels


class InputDefense(nn.Module):
    """An input defense as a module, to put in front of a model:
    ``nn.Sequential(InputDefense("median", size=2), model)`` (e.g. to attack the defended
    system). ``bpda``: the backward pass is the identity's (Athalye et al. 2018's BPDA, the
    straight-through estimator), for transforms whose own gradient is zero almost everywhere
    (bit squeezing); the forward value is the defense's."""

    def __init__(self, name: str, bpda: bool = False, **settings):
        super().__init__()
        from xaisec.defenses import spec  # the registry; resolving it here keeps names defined once

        s = spec(name)
        if s.kind != "input":
            raise ValueError(f"{name!r} is a {s.kind} defense, not an input defense")
        self.name = name
        self.bpda = bool(bpda)
        self.settings = dict(settings)
        self._fn = s.load()

    def forward(self, x):
        y = self._fn(x, **self.settings)
        return x + (y - x).detach() if self.bpda else y

    def extra_repr(self):
        return ", ".join([repr(self.name)] + [f"{k}={v!r}" for k, v in self.settings.items()]
                         + (["bpda=True"] if self.bpda else []))


def with_input_defense(model: nn.Module, name: str, bpda: bool = False, **settings) -> nn.Module:
    """A copy of ``model`` that applies input defense ``name`` to its inputs, inside the model:
    its ``normalize`` module (every classifier of :mod:`xaisec.models` has one, first in its
    forward) becomes ``Sequential(InputDefense, normalize)``, so every other layer keeps its
    name and the explainers (CAM's classifier weights, hooked layers) work on the defended
    system unchanged; ``model`` is left untouched."""
    import copy

    if not isinstance(getattr(model, "normalize", None), nn.Module):
        raise ValueError(f"{type(model).__name__} has no 'normalize' module to put the input "
                         "defense in front of")
    out = copy.deepcopy(model)
    out.normalize = nn.Sequential(InputDefense(name, bpda=bpda, **settings), out.normalize)
    return out
