"""The one batched explain loop of every paper's code (evaluation: no graph kept).

::

    res = explain_batches(expl, x, batch_size=100, device="cuda", out_device="cpu")
    res.maps, res.logits, res.target, res.pred, res.confidence      # one Explanation

``inputs`` is either a tensor (N, C, H, W), split into consecutive batches of ``batch_size``,
or an iterable of ready-made batches (e.g. a generator that pastes a trigger or forms the
CFN evaluation's clean/triggered batches: batch-statistics defenses see exactly these
batches). Results come back in input order.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import torch
from torch import Tensor

from xaisec.explainers.base import Explainer, Explanation

__all__ = ["explain_batches", "iter_explanations"]


def iter_explanations(explainer: Explainer, inputs: Tensor | Iterable[Tensor], target=None, *,
                      batch_size: int | None = None, device=None, out_device=None,
                      progress: bool = False, desc: str | None = None,
                      total: int | None = None) -> Iterator[Explanation]:
    """Explain ``inputs`` batch by batch, yielding one detached :class:`Explanation` per batch.

    ``target``: ``None`` (the predicted classes), an int, or per-sample classes (N,) in the
    order of the concatenated batches. ``batch_size``: for a tensor ``inputs``, the images per
    call (``None``: one call); ignored for an iterable of batches. ``device``: where each batch
    (and its targets) is moved before the call (``None``: where it is). ``out_device``: where
    each result is moved (e.g. ``"cpu"``, so that accelerator memory holds one batch only;
    ``None``: left on the explainer's device). ``progress``: a tqdm bar over the batches
    (``total``: their number, for an iterable without a length).
    """
    from tqdm.auto import tqdm

    if isinstance(inputs, Tensor):
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError("batch_size must be a positive int or None")
        bs = int(batch_size) if batch_size else max(len(inputs), 1)
        batches = (inputs[i: i + bs] for i in range(0, len(inputs), bs))
        total = -(-len(inputs) // bs)
    else:
        batches = iter(inputs)
        total = len(inputs) if hasattr(inputs, "__len__") else total
    per_sample = target is not None and not isinstance(target, int) \
        and torch.as_tensor(target).dim() > 0
    offset = 0
    for xb in tqdm(batches, total=total, disable=not progress, leave=False,
                   desc=desc or f"explain {getattr(explainer, 'name', '')}".rstrip()):
        if device is not None:
            xb = xb.to(device)
        t = target
        if per_sample:
            t = torch.as_tensor(target)[offset: offset + len(xb)].to(xb.device)
        res = explainer.attribute(xb, target=t)
        offset += len(xb)
        yield res if out_device is None else res.to(out_device)
    if per_sample and offset != len(target):
        raise ValueError(f"target has {len(target)} entries for {offset} inputs")


def explain_batches(explainer: Explainer, inputs: Tensor | Iterable[Tensor], target=None, *,
                    batch_size: int | None = None, device=None, out_device=None,
                    progress: bool = False, desc: str | None = None,
                    total: int | None = None) -> Explanation:
    """All of :func:`iter_explanations`' results in one :class:`Explanation` (maps, logits,
    targets, extras concatenated in input order; ``.pred`` and ``.confidence`` from the
    softmax of the logits)."""
    parts = list(iter_explanations(explainer, inputs, target, batch_size=batch_size,
                                   device=device, out_device=out_device, progress=progress,
                                   desc=desc, total=total))
    return Explanation.cat(parts)
