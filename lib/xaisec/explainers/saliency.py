"""Captum Saliency and SmoothGrad (NoiseTunnel over Saliency): FGSM-XAI and EXIAA.

Maps are raw attributions on the ``[0, 1]`` input scale (the model normalises internally),
shaped like the input, detached.
"""
from __future__ import annotations

import torch
from torch import nn

from xaisec.explainers.base import ChunkedExplainer, Explanation, resolve_target, seeded, split_target

__all__ = ["Saliency", "SmoothGrad"]


class Saliency(ChunkedExplainer):
    """Captum Saliency with ``abs=True``: ``|d logit_t / d x|`` on the [0, 1] input scale.

    The logits (and the argmax target) come from the same forward pass as the gradient:
    Captum differentiates a forward function that records the model's output and returns the
    target logit of each sample, so no second forward pass is run.
    (:class:`xaisec.explainers.Gradient` differentiates w.r.t. the *normalised* input instead;
    the two differ by the per-channel factor std.)
    """

    name = "saliency"

    def __init__(self, model: nn.Module, batch_size: int | None = None, abs: bool = True):
        super().__init__(model, batch_size)
        self.abs = bool(abs)

    def _attribute(self, x, target, create_graph):
        from captum.attr import Saliency as _Saliency

        x = x.detach()
        n = x.shape[0]
        maps, logits, targets = [], [], []
        for a, b in self._chunks(n):
            spec = split_target(target, n, a, b)
            seen = {}

            def forward(inp, spec=spec, seen=seen):
                out = self.model(inp)
                t = resolve_target(spec, out)
                seen["logits"], seen["target"] = out, t
                # what Captum selects for a target tensor: gather -> (n, 1)
                return out.gather(1, t[:, None])

            maps.append(_Saliency(forward).attribute(x[a:b], target=None, abs=self.abs).detach())
            logits.append(seen["logits"].detach())
            targets.append(seen["target"])
        return Explanation(torch.cat(maps).to(x.dtype), torch.cat(logits), torch.cat(targets))


class SmoothGrad(ChunkedExplainer):
    """Captum NoiseTunnel over Saliency, ``nt_type="smoothgrad"``: the mean of ``|grad|`` over
    ``nt_samples`` (20) copies of x plus Gaussian noise of stdev ``stdevs`` (0.10) on the [0, 1]
    input scale (not clipped), as in FGSM-XAI. ``nt_samples_batch_size`` bounds the expansion.
    ``seed``: the noise is drawn from torch's RNG seeded with it inside ``fork_rng`` (the global
    RNG is untouched and the maps deterministic); ``None`` uses the global RNG. ``abs=False``
    averages signed gradients instead. One seeded stream per call: how the inputs are split
    into calls changes the draws (``batch_independent`` is False).

    Config: ``fgsmxai.smoothgrad`` (``nt_samples``, ``stdevs``, ``seed``,
    ``nt_samples_batch_size``)."""

    name = "smoothgrad"
    batch_independent = False

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

    def _attribute(self, x, target, create_graph):
        with seeded(self.seed, x.device):
            return super()._attribute(x, target, create_graph)

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
