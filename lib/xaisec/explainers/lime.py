"""LIME over SLIC superpixels (FGSM-XAI): Captum's Lime, with the perturbed samples of all the
images of a call evaluated in shared forward batches."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from xaisec.explainers.base import Explainer, Explanation, resolve_target, seeded

__all__ = ["Lime", "slic_segments"]


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


class Lime(Explainer):
    """LIME over SLIC superpixels, Captum's algorithm (:class:`captum.attr.Lime` with a feature
    mask, one surrogate per image), ``n_samples`` (1000) perturbations per image.

    * Superpixels: :func:`slic_segments` (``n_segments`` ~50 for 32x32, compactness 10);
      ``Explanation.extra["segments"]`` (N, 1, H, W).
    * Interpretable samples: Captum's default, each superpixel on with probability 0.5, drawn
      by Captum's own sampling function, one sample after the other as Captum's Lime draws
      them. ``seed``: image ``i`` of a call draws from torch's RNG seeded with ``seed + i``
      inside ``fork_rng`` (so the draws do not depend on the other images, but on the image's
      position in the call: ``batch_independent`` is False); ``None``: the global RNG.
    * Hidden superpixels are replaced by ``baseline``: ``"mean"`` (default) the image's mean
      colour, ``"zeros"`` black, ``"segment_mean"`` the superpixel's own mean colour (what the
      ``lime`` package does with ``hide_color=None``, used by the FGSM-XAI notebooks).
    * Forward passes: the perturbed images of all the images of the call, in order, share
      forward batches of ``perturbations_per_eval`` (64) images (the memory bound); the
      surrogate of each image is fitted on its own samples.
    * Surrogate: Captum's ridge regression (``alpha`` 1, as in the ``lime`` package), samples
      weighted by ``sqrt(exp(-d^2 / kernel_width^2))`` with d the cosine distance between the
      binary sample and the all-on vector (``kernel_width`` 0.25, the ``lime`` package's choice
      for images).

    The map gives every pixel of a superpixel that superpixel's weight (N, 3, H, W).
    ``Explanation.extra``: ``mask`` (N, H, W) bool, LIME's own binary mask: the
    ``num_features`` (5) superpixels with the largest *positive* weights for the explained
    class (fewer if fewer are positive), as ``get_image_and_mask(label, positive_only=True,
    num_features=5, hide_rest=False)``; ``weights``: the superpixel weights of each image (a
    list of N vectors).

    Equal, up to float rounding of the batched forward passes, to calling Captum's Lime on one
    image at a time with these settings (tested).

    Config: ``fgsmxai.lime`` (``n_samples``, ``num_features``, ``n_segments``, ``baseline``,
    ``seed``, ``perturbations_per_eval``; ``images_per_call`` is the loop's batch size).
    """

    name = "lime"
    map_channels = 3
    batch_independent = False

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
        super().__init__(model)
        if baseline not in ("mean", "zeros", "segment_mean"):
            raise ValueError("baseline must be 'mean', 'zeros' or 'segment_mean'")
        if int(n_samples) < 1 or int(perturbations_per_eval) < 1:
            raise ValueError("n_samples and perturbations_per_eval must be positive")
        self.n_samples = int(n_samples)
        self.perturbations_per_eval = int(perturbations_per_eval)
        self.n_segments = int(n_segments)
        self.compactness = float(compactness)
        self.baseline = baseline
        self.num_features = int(num_features)
        self.alpha = float(alpha)
        self.kernel_width = float(kernel_width)
        self.seed = seed

    # -- the pieces of Captum's Lime --------------------------------------------------------

    def _similarity(self, original_inp, perturbed_inp, interpretable_sample, **kwargs):
        """The sample weight of one interpretable sample (1, M), Captum's ``similarity_func``
        signature: ``sqrt(exp(-d^2 / kernel_width^2))``, d the cosine distance to all-on."""
        z = interpretable_sample.float()
        cos = z.sum() / (z.norm() * np.sqrt(z.numel())).clamp_min(1e-12)
        d = 1.0 - cos
        return torch.sqrt(torch.exp(-(d**2) / self.kernel_width**2))

    def _similarities(self, z: Tensor) -> Tensor:
        """:meth:`_similarity` of every row of ``z`` (S, M). The weight depends on the number
        of superpixels on only, so it is computed once per count by :meth:`_similarity` itself
        (the same float operations as per sample) and looked up."""
        m = z.shape[1]
        on = torch.arange(m, device=z.device)
        table = torch.stack([self._similarity(None, None, (on < k).long()[None]).reshape(())
                             for k in range(m + 1)])
        return table[z.sum(1)]

    def _baseline(self, x: Tensor, seg: Tensor) -> Tensor:
        """The hidden-superpixel values of one image ``x`` (1, C, H, W), ``seg`` (H, W)."""
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

    def _draw(self, x: Tensor, m: int, i: int) -> Tensor:
        """The ``n_samples`` interpretable samples (n_samples, m) long of image ``i`` of the
        call (``x`` (1, C, H, W)), drawn as Captum's Lime draws them: one call of its default
        sampling function per sample, from the RNG seeded with ``seed + i``."""
        from captum.attr._core.lime import default_perturb_func

        with seeded(None if self.seed is None else int(self.seed) + i, x.device):
            return torch.cat([default_perturb_func(x, num_interp_features=m)
                              for _ in range(self.n_samples)])

    def _fit(self, z: Tensor, outputs: Tensor, sims: Tensor) -> Tensor:
        """Captum's surrogate fit (as in ``LimeBase.attribute``): the superpixel weights (M,).
        Captum passes the samples as one batch of a DataLoader; the batch is passed as it is
        here (the same tensors, without collating them sample by sample)."""
        from captum._utils.models.linear_model import SkLearnRidge

        model = SkLearnRidge(alpha=self.alpha)
        model.fit([(z.float(), outputs.float(), sims.float())])
        return model.representation().reshape(-1)

    # -- the call ---------------------------------------------------------------------------

    def _attribute(self, x, target, create_graph):
        x = x.detach()
        n = x.shape[0]
        with torch.no_grad():
            logits = self.model(x)
        t = resolve_target(target, logits)
        segments = slic_segments(x, self.n_segments, self.compactness)
        segs = [segments[i, 0] for i in range(n)]
        xs = [x[i: i + 1] for i in range(n)]
        bases = [self._baseline(xs[i], segs[i]) for i in range(n)]
        samples = [self._draw(xs[i], int(segs[i].max()) + 1, i) for i in range(n)]
        outputs = self._evaluate(xs, segs, bases, samples, t)
        weights, maps = [], []
        mask = torch.zeros(n, *x.shape[2:], dtype=torch.bool, device=x.device)
        for i in range(n):
            w = self._fit(samples[i], outputs[i], self._similarities(samples[i]))
            w = w.to(device=x.device, dtype=x.dtype)
            weights.append(w)
            order = torch.argsort(w, descending=True)
            top = order[: self.num_features]
            top = top[w[top] > 0]
            mask[i] = torch.isin(segs[i], top)
            maps.append(w[segs[i]].expand_as(xs[i][0]))
        maps = torch.stack(maps) if maps else torch.zeros_like(x)
        return Explanation(maps.to(x.dtype), logits.detach(), t,
                           {"mask": mask, "segments": segments, "weights": weights})

    @torch.no_grad()
    def _evaluate(self, xs, segs, bases, samples, t) -> list[Tensor]:
        """The target logit of every perturbed image, per image (n_samples,): the perturbed
        images of all images, in order, in forward batches of ``perturbations_per_eval``. A
        perturbed image is Captum's ``mask * x + (1 - mask) * baseline``."""
        s, p = self.n_samples, self.perturbations_per_eval
        total = len(xs) * s
        out = torch.empty(total, dtype=torch.float32, device=xs[0].device if xs else "cpu")
        for g0 in range(0, total, p):
            g1 = min(g0 + p, total)
            parts, rows = [], []
            for i in range(g0 // s, (g1 - 1) // s + 1):
                a, b = max(g0, i * s) - i * s, min(g1, (i + 1) * s) - i * s
                keep = samples[i][a:b][:, segs[i]].bool()[:, None]  # (k, 1, H, W)
                dt = xs[i].dtype
                parts.append(keep.to(dt) * xs[i] + (~keep).to(dt) * bases[i])
                rows.append(t[i].expand(b - a))
            logits = self.model(torch.cat(parts))
            out[g0:g1] = logits.gather(1, torch.cat(rows)[:, None]).reshape(-1).to(out.dtype)
        return list(out.split(s))
