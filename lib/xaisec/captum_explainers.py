"""Thin, batched wrappers around Captum's attribution methods (EXIAA and FGSM-XAI explainers).

One call shape, like :mod:`xaisec.explainers`::

    expl = make_captum_explainer("ig", model, n_steps=50, internal_batch_size=64)
    maps = expl(x, target=None)      # x: (N, 3, H, W) in [0, 1]  ->  maps (N, 3, H, W) float
    expl.last_logits                 # logits of x (eval of the model as it is, under no_grad)
    expl.last_target                 # the explained classes, LongTensor (N,)

``target`` is ``None`` (the predicted, argmax, class; computed once per call under
``torch.no_grad()``), an int, or a LongTensor of shape (N,). The maps are raw attributions on the
``[0, 1]`` input scale (the model normalises internally), detached. The device comes from the
inputs; the model's train/eval mode is never changed (Captum does not change it either; use
eval mode, otherwise BatchNorm couples the samples of a batch and chunking changes the result).

==================  =======================================================================
name                method
==================  =======================================================================
``saliency``        :class:`captum.attr.Saliency`, ``|d logit_t / d x|``
``ig``              :class:`captum.attr.IntegratedGradients`, zero baseline (black image)
``deepliftshap``    :class:`captum.attr.DeepLiftShap` over a baseline distribution
``smoothgrad``      :class:`captum.attr.NoiseTunnel` (smoothgrad) over Saliency
``lime``            :class:`captum.attr.Lime` over SLIC superpixels; also ``last_mask``
==================  =======================================================================

Memory stays bounded: every explainer processes the input in chunks of ``batch_size`` images
(``None``: one chunk); the methods that expand the batch also take Captum's own internal batch
size (``internal_batch_size`` for IG, ``nt_samples_batch_size`` for SmoothGrad,
``perturbations_per_eval`` for LIME; DeepLiftShap expands each chunk by the number of baselines,
so ``batch_size`` bounds it).

Settings (REFERENCE.md): SmoothGrad 20 samples, noise stdev 0.10, LIME 1000 samples, top label,
positive only, 5 superpixels (FGSM-XAI); Saliency, IG and DeepLiftShap (EXIAA).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "CaptumExplainer",
    "Saliency",
    "IntegratedGradients",
    "DeepLiftShap",
    "SmoothGrad",
    "Lime",
    "slic_segments",
    "CAPTUM_EXPLAINERS",
    "make_captum_explainer",
]


@contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed torch's RNG (CPU, plus the CUDA device of the inputs) inside a forked RNG state, so
    the global RNG is left as it was. ``seed=None``: no forking, the global RNG is used."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


class CaptumExplainer:
    """Base class: ``explainer(x, target=None) -> maps`` (N, 3, H, W).

    Subclasses implement :meth:`_attribute_chunk` (a chunk of inputs and its targets, gradients
    enabled). The base class checks the input, resolves the target (argmax of one no-grad
    forward pass), splits the batch in chunks of ``batch_size``, and stores
    :attr:`last_logits` and :attr:`last_target`.
    """

    name: str = ""

    def __init__(self, model: nn.Module, batch_size: int | None = None):
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError("batch_size must be a positive int or None")
        self.model = model
        self.batch_size = None if batch_size is None else int(batch_size)
        self.last_logits: Tensor | None = None
        self.last_target: Tensor | None = None

    def __call__(self, x: Tensor, target=None, create_graph: bool = False) -> Tensor:
        if create_graph:
            raise NotImplementedError(
                f"{type(self).__name__} (Captum) gives detached maps; use xaisec.explainers "
                "for differentiable explanations"
            )
        if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point():
            raise ValueError("x must be a floating-point tensor of shape (N, C, H, W)")
        x = x.detach()
        with torch.no_grad():
            logits = self.model(x)
        t = self._resolve_target(target, logits)
        self.last_logits, self.last_target = logits.detach(), t
        self._begin(x)
        bs = self.batch_size or x.shape[0]
        out = []
        with torch.enable_grad():
            for i in range(0, x.shape[0], bs):
                out.append(self._attribute_chunk(x[i : i + bs], t[i : i + bs]).detach())
        return torch.cat(out).to(x.dtype)

    #: Captum-style alias.
    def attribute(self, x: Tensor, target=None) -> Tensor:
        return self(x, target=target)

    @staticmethod
    def _resolve_target(target, logits: Tensor) -> Tensor:
        n = logits.shape[0]
        if target is None:
            return logits.argmax(1)
        if isinstance(target, int):
            t = torch.full((n,), target, dtype=torch.long, device=logits.device)
        else:
            t = torch.as_tensor(target, device=logits.device)
            if t.dim() == 0:
                t = t.expand(n)
            if t.shape != (n,) or t.is_floating_point():
                raise ValueError(f"target must be None, an int or an integer tensor of shape ({n},)")
            t = t.long()
        if (t < 0).any() or (t >= logits.shape[1]).any():
            raise ValueError(f"target out of range [0, {logits.shape[1]})")
        return t

    def _begin(self, x: Tensor) -> None:
        """Hook run once per call before the chunks (e.g. to build baselines)."""

    def _attribute_chunk(self, x: Tensor, t: Tensor) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.model).__name__})"


class Saliency(CaptumExplainer):
    """Captum Saliency with ``abs=True``: ``|d logit_t / d x|`` on the [0, 1] input scale.

    (:class:`xaisec.explainers.Gradient` differentiates w.r.t. the *normalised* input instead;
    the two differ by the per-channel factor std.)
    """

    name = "saliency"

    def __init__(self, model: nn.Module, batch_size: int | None = None, abs: bool = True):
        super().__init__(model, batch_size)
        self.abs = bool(abs)

    def _attribute_chunk(self, x, t):
        from captum.attr import Saliency as _Saliency

        return _Saliency(self.model).attribute(x, target=t, abs=self.abs)


class IntegratedGradients(CaptumExplainer):
    """Captum IntegratedGradients from a zero (black) baseline, ``n_steps`` (50) Gauss-Legendre
    steps; ``internal_batch_size`` bounds the ``chunk x n_steps`` expansion. Completeness: the
    attributions of an image sum to ``f_t(x) - f_t(0)`` up to the integration error."""

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


class DeepLiftShap(CaptumExplainer):
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


class SmoothGrad(CaptumExplainer):
    """Captum NoiseTunnel over Saliency, ``nt_type="smoothgrad"``: the mean of ``|grad|`` over
    ``nt_samples`` (20) copies of x plus Gaussian noise of stdev ``stdevs`` (0.10) on the [0, 1]
    input scale (not clipped), as in FGSM-XAI. ``nt_samples_batch_size`` bounds the expansion.
    ``seed``: the noise is drawn from torch's RNG seeded with it inside ``fork_rng`` (the global
    RNG is untouched and the maps deterministic); ``None`` uses the global RNG. ``abs=False``
    averages signed gradients instead."""

    name = "smoothgrad"

    def __init__(
        self,
        model: nn.Module,
        nt_samples: int = 20,
        stdevs: float = 0.10,
        nt_samples_batch_size: int | None = None,
        seed: int | None = 0,
        batch_size: int | None = None,
        abs: bool = True,
    ):
        super().__init__(model, batch_size)
        self.nt_samples = int(nt_samples)
        self.stdevs = float(stdevs)
        self.nt_samples_batch_size = nt_samples_batch_size
        self.seed = seed
        self.abs = bool(abs)

    def _attribute_chunk(self, x, t):
        from captum.attr import NoiseTunnel
        from captum.attr import Saliency as _Saliency

        nt = NoiseTunnel(_Saliency(self.model))
        return nt.attribute(
            x,
            nt_type="smoothgrad",
            nt_samples=self.nt_samples,
            nt_samples_batch_size=self.nt_samples_batch_size,
            stdevs=self.stdevs,
            target=t,
            abs=self.abs,
        )

    def __call__(self, x: Tensor, target=None, create_graph: bool = False) -> Tensor:
        # one seeded stream per call: chunking changes the draws, the seed makes calls repeatable
        with _seeded(self.seed, x.device if isinstance(x, Tensor) else torch.device("cpu")):
            return super().__call__(x, target=target, create_graph=create_graph)


def slic_segments(
    x: Tensor, n_segments: int = 50, compactness: float = 10.0, sigma: float = 0.0
) -> Tensor:
    """SLIC superpixels (scikit-image) of each image of ``x`` (N, 3, H, W) in [0, 1]: a LongTensor
    (N, 1, H, W) of labels 0..M_i-1 (relabelled to be contiguous), on ``x``'s device.

    SLIC works in Lab colour and enforces connectivity: on natural images ``n_segments=50`` gives
    ~35-50 superpixels at 32x32, but pure-noise images collapse to a single superpixel."""
    from skimage.segmentation import slic

    imgs = x.detach().float().cpu().permute(0, 2, 3, 1).numpy().astype(np.float64)
    segs = []
    for img in imgs:
        s = slic(img, n_segments=n_segments, compactness=compactness, sigma=sigma,
                 start_label=0, channel_axis=-1)
        _, s = np.unique(s, return_inverse=True)
        segs.append(s.reshape(img.shape[:2]))
    return torch.from_numpy(np.stack(segs)[:, None]).long().to(x.device)


class Lime(CaptumExplainer):
    """Captum Lime over SLIC superpixels, one image at a time (Captum's Lime with a feature mask
    explains one example per call), with the ``n_samples`` (1000) perturbations evaluated in
    batches of ``perturbations_per_eval`` (64).

    * Superpixels: :func:`slic_segments` (``n_segments`` ~50 for 32x32, compactness 10).
      Available as :attr:`last_segments` (N, 1, H, W).
    * Interpretable samples: Captum's default, each superpixel on with probability 0.5.
    * Hidden superpixels are replaced by ``baseline``: ``"mean"`` (default) the image's mean
      colour, ``"zeros"`` black, ``"segment_mean"`` the superpixel's own mean colour (what the
      ``lime`` package does with ``hide_color=None``, used by the FGSM-XAI notebooks).
    * Surrogate: ridge regression (``alpha`` 1, as in the ``lime`` package), samples weighted by
      ``sqrt(exp(-d^2 / kernel_width^2))`` with d the cosine distance between the binary sample
      and the all-on vector (``kernel_width`` 0.25, the ``lime`` package's choice for images).
    * ``seed``: the perturbations are drawn from torch's RNG seeded inside ``fork_rng``.

    The map gives every pixel of a superpixel that superpixel's weight (N, 3, H, W). The binary
    mask :attr:`last_mask` (N, H, W) bool is LIME's own: the ``num_features`` (5) superpixels
    with the largest *positive* weights for the explained class (fewer if fewer are positive),
    as ``get_image_and_mask(label, positive_only=True, num_features=5, hide_rest=False)``.
    """

    name = "lime"

    def __init__(
        self,
        model: nn.Module,
        n_samples: int = 1000,
        perturbations_per_eval: int = 64,
        n_segments: int = 50,
        compactness: float = 10.0,
        baseline: str = "mean",
        num_features: int = 5,
        alpha: float = 1.0,
        kernel_width: float = 0.25,
        seed: int | None = 0,
    ):
        super().__init__(model, batch_size=1)
        if baseline not in ("mean", "zeros", "segment_mean"):
            raise ValueError("baseline must be 'mean', 'zeros' or 'segment_mean'")
        self.n_samples = int(n_samples)
        self.perturbations_per_eval = int(perturbations_per_eval)
        self.n_segments = int(n_segments)
        self.compactness = float(compactness)
        self.baseline = baseline
        self.num_features = int(num_features)
        self.alpha = float(alpha)
        self.kernel_width = float(kernel_width)
        self.seed = seed
        self.last_mask: Tensor | None = None
        self.last_segments: Tensor | None = None
        self.last_weights: list[Tensor] | None = None

    def _similarity(self, original_inp, perturbed_inp, interpretable_sample, **kwargs):
        z = interpretable_sample.float()
        cos = z.sum() / (z.norm() * np.sqrt(z.numel())).clamp_min(1e-12)
        d = 1.0 - cos
        return torch.sqrt(torch.exp(-(d**2) / self.kernel_width**2))

    def _baseline(self, x: Tensor, seg: Tensor) -> Tensor:
        if self.baseline == "zeros":
            return torch.zeros_like(x)
        if self.baseline == "mean":
            return x.mean(dim=(2, 3), keepdim=True).expand_as(x).contiguous()
        m = int(seg.max()) + 1
        flat = seg.reshape(-1)
        xs = x.reshape(x.shape[1], -1)
        sums = torch.zeros(x.shape[1], m, device=x.device, dtype=x.dtype).index_add_(1, flat, xs)
        counts = torch.bincount(flat, minlength=m).to(x.dtype)
        return (sums / counts)[:, flat].reshape_as(x)

    def _begin(self, x):
        self.last_segments = slic_segments(x, self.n_segments, self.compactness)
        self.last_mask = torch.zeros(x.shape[0], *x.shape[2:], dtype=torch.bool, device=x.device)
        self.last_weights = []
        self._i = 0

    def _attribute_chunk(self, x, t):
        from captum._utils.models.linear_model import SkLearnRidge
        from captum.attr import Lime as _Lime

        i = self._i
        self._i += 1
        seg = self.last_segments[i : i + 1]  # (1, 1, H, W)
        lime = _Lime(
            self.model,
            interpretable_model=SkLearnRidge(alpha=self.alpha),
            similarity_func=self._similarity,
        )
        with _seeded(None if self.seed is None else int(self.seed) + i, x.device):
            w = lime.attribute(
                x,
                baselines=self._baseline(x, seg[0, 0]),
                target=t,
                feature_mask=seg.expand_as(x),
                n_samples=self.n_samples,
                perturbations_per_eval=self.perturbations_per_eval,
                return_input_shape=False,
            )
        w = w.reshape(-1).to(device=x.device, dtype=x.dtype)
        self.last_weights.append(w)
        order = torch.argsort(w, descending=True)
        top = order[: self.num_features]
        top = top[w[top] > 0]
        self.last_mask[i] = torch.isin(seg[0, 0], top)
        return w[seg].expand_as(x)


CAPTUM_EXPLAINERS = {
    "saliency": Saliency,
    "ig": IntegratedGradients,
    "deepliftshap": DeepLiftShap,
    "smoothgrad": SmoothGrad,
    "lime": Lime,
}


def make_captum_explainer(name: str, model: nn.Module, **kwargs) -> CaptumExplainer:
    """Build the Captum explainer registered as ``name`` (see :data:`CAPTUM_EXPLAINERS`)."""
    from .explainers import from_registry

    return from_registry(CAPTUM_EXPLAINERS, name, model, "Captum explainer", **kwargs)
