"""The base class of every explainer, its result object and the shared target resolution.

One call shape, as Captum's ``Method(model).attribute(inputs, target=...)``::

    expl = GradCAM(model)                       # or make_explainer("gradcam", model, ...)
    res = expl.attribute(x, target=None)        # x: (N, C, H, W) in [0, 1], batch first
    res.maps, res.logits, res.target            # an Explanation, nothing left on ``expl``
    maps = expl(x, target=None)                 # shortcut: expl.attribute(x, ...).maps

``target``: ``None`` (the predicted, argmax, class), an int (every sample) or integer class
indices of shape (N,). The device comes from the inputs; the model's train/eval mode is never
changed (the caller decides).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar, Iterator, Sequence

import torch
from torch import Tensor, nn

__all__ = ["ChunkedExplainer", "Explainer", "Explanation", "resolve_target", "seeded",
           "split_target", "target_score"]


@dataclass
class Explanation:
    """What an explainer returns for a batch of N inputs.

    ``maps``: the attribution maps, batch first ((N, 1, H, W) for the CAM family, shaped like
    the input otherwise); ``logits``: the model's output (N, classes) on the inputs (for the
    differentiable explainers, of the same forward pass as the map); ``target``: the explained
    classes, LongTensor (N,); ``extra``: method-specific outputs, batch first where they are
    per sample (LIME: ``mask`` (N, H, W) bool, ``segments`` (N, 1, H, W), ``weights`` a list of
    N superpixel-weight vectors).
    """

    maps: Tensor
    logits: Tensor
    target: Tensor
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.maps.shape[0]

    @property
    def probs(self) -> Tensor:
        """Softmax probabilities (float32, detached)."""
        return torch.softmax(self.logits.detach().float(), 1)

    @property
    def confidence(self) -> Tensor:
        """The largest softmax probability of each sample (N,)."""
        return self.probs.max(1).values

    @property
    def pred(self) -> Tensor:
        """The predicted class of each sample (N,), the argmax of :attr:`probs`."""
        return self.probs.max(1).indices

    def detach(self) -> "Explanation":
        return self._apply(lambda t: t.detach())

    def to(self, device) -> "Explanation":
        return self._apply(lambda t: t.to(device))

    def cpu(self) -> "Explanation":
        return self.to("cpu")

    def _apply(self, fn) -> "Explanation":
        def conv(v):
            if isinstance(v, Tensor):
                return fn(v)
            if isinstance(v, (list, tuple)):
                return type(v)(conv(u) for u in v)
            return v

        return Explanation(fn(self.maps), fn(self.logits), fn(self.target),
                           {k: conv(v) for k, v in self.extra.items()})

    @classmethod
    def cat(cls, parts: Sequence["Explanation"]) -> "Explanation":
        """Concatenate the explanations of consecutive batches (tensors along the batch
        dimension; list-valued extras, one entry per sample, are joined)."""
        if not parts:
            raise ValueError("nothing to concatenate")
        extra = {}
        for k, v in parts[0].extra.items():
            vals = [p.extra[k] for p in parts]
            if isinstance(v, Tensor):
                extra[k] = torch.cat(vals)
            elif isinstance(v, (list, tuple)):
                extra[k] = [u for val in vals for u in val]
            else:
                extra[k] = v
        return cls(torch.cat([p.maps for p in parts]), torch.cat([p.logits for p in parts]),
                   torch.cat([p.target for p in parts]), extra)


def resolve_target(target, logits: Tensor) -> Tensor:
    """The explained classes as a LongTensor (N,) on the logits' device: ``None`` -> the argmax
    of ``logits`` (N, classes), an int -> that class for every sample, else integer class
    indices of shape (N,). A float/bool dtype, a wrong shape or a class out of range is a
    ValueError."""
    n, classes = logits.shape
    if target is None:
        return logits.detach().argmax(1)
    t = torch.as_tensor(target, device=logits.device)
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"target must be integer class indices, got dtype {t.dtype}")
    t = t.long()
    if t.dim() == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise ValueError(f"target must have shape ({n},), got {tuple(t.shape)}")
    if n and (int(t.min()) < 0 or int(t.max()) >= classes):
        raise ValueError(f"target out of range [0, {classes}): {t.tolist()}")
    return t


def target_score(logits: Tensor, t: Tensor) -> Tensor:
    """Sum over the batch of each sample's target logit (its gradient w.r.t. a per-sample
    tensor is that sample's gradient when the samples are independent; with BatchNorm in train
    mode or a batch-statistics defense it is the gradient of the sum, as in Captum)."""
    return logits.gather(1, t[:, None]).sum()


def split_target(target, n: int, start: int, stop: int):
    """The part of a target specification (as :func:`resolve_target` takes it) that belongs to
    samples ``start:stop`` of a batch of ``n``: ``None`` and scalars apply to every part; a
    per-sample target is checked to have ``n`` entries and sliced."""
    if target is None or isinstance(target, int):
        return target
    t = torch.as_tensor(target)
    if t.dim() == 0:
        return t
    if t.shape != (n,):
        raise ValueError(f"target must have shape ({n},), got {tuple(t.shape)}")
    return t[start:stop]


@contextmanager
def seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed torch's RNG (CPU, plus the CUDA device of the inputs) inside a forked RNG state, so
    the global RNG is left as it was. ``seed=None``: no forking, the global RNG is used."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


class Explainer:
    """Base class of every explainer: ``Method(model, **settings).attribute(x, target=None,
    create_graph=False) -> Explanation``; ``Method(model)(x, ...)`` returns the maps only.

    Subclasses set :attr:`name` (the registry key) and implement :meth:`_attribute`, which
    gets a checked input (gradients enabled) and returns an :class:`Explanation`; the base
    class checks the input, refuses ``create_graph`` for methods that are not
    :attr:`differentiable` and detaches the result unless ``create_graph``. Forward hooks are
    registered only inside :func:`xaisec.explainers.hooks.capture` blocks, so none outlives a
    call.

    Class attributes: ``map_channels`` (1 for the CAM family, 3 for maps shaped like the RGB
    input); ``differentiable`` (``create_graph=True`` keeps the map in the autograd graph, for
    losses on explanations); ``batch_independent`` (with the model in eval mode a sample's map
    does not depend on the other samples of the call; False where seeded random draws are
    made per call).

    :meth:`settings_kwargs` maps a config section (``xai``, ``fgsmxai``, ``exiaa``) to
    constructor arguments; see :func:`xaisec.explainers.explainer_kwargs`.
    """

    name: ClassVar[str] = ""
    map_channels: ClassVar[int] = 1
    differentiable: ClassVar[bool] = False
    batch_independent: ClassVar[bool] = True

    def __init__(self, model: nn.Module):
        self.model = model

    def attribute(self, inputs: Tensor, target=None, create_graph: bool = False) -> Explanation:
        """Explain ``inputs`` (N, C, H, W) for ``target`` (see :func:`resolve_target`).

        ``create_graph=False``: detached maps and logits (works under ``torch.no_grad()``).
        ``create_graph=True`` (differentiable explainers only): maps and logits stay in the
        graph; pass inputs that require grad to differentiate with respect to them."""
        if not isinstance(inputs, Tensor) or inputs.dim() != 4 or not inputs.is_floating_point():
            raise ValueError("x must be a floating-point tensor of shape (N, C, H, W)")
        if create_graph and not self.differentiable:
            raise NotImplementedError(
                f"{type(self).__name__} gives detached maps; use a differentiable explainer "
                "(grad, gradcam, relevancecam, cam) for losses on explanations")
        with torch.enable_grad():
            res = self._attribute(inputs, target, create_graph)
        return res if create_graph else res.detach()

    def __call__(self, inputs: Tensor, target=None, create_graph: bool = False) -> Tensor:
        """The maps only: ``self.attribute(inputs, target, create_graph).maps``."""
        return self.attribute(inputs, target=target, create_graph=create_graph).maps

    def _attribute(self, x: Tensor, target, create_graph: bool) -> Explanation:
        raise NotImplementedError

    @classmethod
    def settings_kwargs(cls, settings: dict | None, model: nn.Module | None = None) -> dict:
        """Constructor arguments from a config section (``xai``, ``fgsmxai``, ``exiaa``):
        by default the section's sub-section named :attr:`name` (e.g. ``fgsmxai.lime``),
        without the keys that are not constructor arguments (loop settings such as
        ``images_per_call``). Methods with top-level keys override this."""
        import inspect

        sub = (settings or {}).get(cls.name)
        if not isinstance(sub, dict):
            return {}
        params = inspect.signature(cls.__init__).parameters
        return {k: v for k, v in sub.items() if k in params and k not in ("self", "model")}

    @staticmethod
    def _input_with_grad(x: Tensor) -> Tensor:
        """``x`` itself if it is already part of a graph (the caller backpropagates to it),
        else a detached copy that requires grad (so the graph exists even for frozen
        weights)."""
        return x if x.requires_grad else x.detach().requires_grad_(True)

    def __repr__(self) -> str:
        extra = getattr(self, "layer", None)
        return f"{type(self).__name__}({type(self.model).__name__}" + (
            f", layer={extra!r})" if extra else ")"
        )


class ChunkedExplainer(Explainer):
    """Base of the explainers that run in chunks of ``batch_size`` inputs (``None``: one
    chunk) so that memory stays bounded (the Captum wrappers; the methods that expand the
    batch take their own internal batch size too).

    The logits come from one no-grad forward pass over the whole input, the targets are
    resolved from them, then :meth:`_begin` runs once and :meth:`_attribute_chunk` per chunk
    (gradients enabled). Maps are detached, in the input's dtype."""

    map_channels = 3

    def __init__(self, model: nn.Module, batch_size: int | None = None):
        super().__init__(model)
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError("batch_size must be a positive int or None")
        self.batch_size = None if batch_size is None else int(batch_size)

    def _chunks(self, n: int):
        bs = self.batch_size or max(n, 1)
        return [(i, min(i + bs, n)) for i in range(0, n, bs)]

    def _attribute(self, x, target, create_graph):
        x = x.detach()
        with torch.no_grad():
            logits = self.model(x)
        t = resolve_target(target, logits)
        self._begin(x)
        maps = [self._attribute_chunk(x[a:b], t[a:b]).detach() for a, b in self._chunks(len(x))]
        return Explanation(torch.cat(maps).to(x.dtype), logits.detach(), t)

    def _begin(self, x: Tensor) -> None:
        """Hook run once per call before the chunks (e.g. to build baselines)."""

    def _attribute_chunk(self, x: Tensor, t: Tensor) -> Tensor:
        raise NotImplementedError
