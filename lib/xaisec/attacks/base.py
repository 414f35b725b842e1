"""The base class of the evasion attacks, shaped like torchattacks' ``Attack``.

``Attack(model, **hyperparameters)(images, labels)`` returns adversarial images:

* inputs in [0, 1] (N, C, H, W); models normalise inside themselves, so attacks work in pixel
  space; outputs have the inputs' shape, dtype and device; batched and device-agnostic;
* the model's mode is never changed (callers set ``eval()``) and the parameters' ``.grad`` is
  never written: gradients are taken with :func:`torch.autograd.grad` w.r.t. the input only.

Beyond torchattacks, the base carries what the interpretation-aware attacks (AdvEdge/ADV2,
docs/settings.md) need:

* **targets**: ``attack(x, y, target=y_t)``, or ``target_fn=`` at construction (a function
  ``(x, y) -> y_t``, e.g. :func:`random_other_class`, AdvEdge's ``(y + randint(1, C)) mod C``).
  Untargeted attacks ascend ``loss(logits, y)``; targeted ones descend ``loss(logits, y_t)``.
* **target maps**: ``attack(x, y, target_map=m_t)`` hands the explanation maps the adversarial
  maps should stay close to to the attack (``uses_target_map``) or to its ``extra_loss``.
* **budget**: ``norm`` declares the perturbation budget; attacks with ``norm = None`` (C&W,
  StAdv) take ``eps=None`` only, budgeted ones (FGSM, BIM, PGD) need a number.
* **pluggable objective**: ``loss(logits, labels) -> Tensor`` replaces the default
  cross-entropy; ``extra_loss(adv, logits, batch) -> Tensor`` is a term the attack *minimises*
  in addition (e.g. ``lambda * ||g(adv) - m_t||^2``). Non-scalar values are summed.
* **per-sample records**: :meth:`Attack.run` returns an :class:`AttackResult` (adversarial
  images, prediction, confidence, success, iterations, time); ``__call__`` returns only the
  images, like torchattacks.

A subclass implements :meth:`Attack.forward` ``(batch) -> Crafted(adv, iterations)`` and takes
its gradients with :meth:`Attack.gradient`, which applies the target, loss and extra term.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Callable, ClassVar, NamedTuple, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: ``loss(logits, labels) -> Tensor``: labels are the true labels (untargeted; ascended) or the
#: targets (targeted; descended)
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``extra_loss(adv, logits, batch) -> Tensor``: a term minimised alongside the loss
ExtraLossFn = Callable[[torch.Tensor, torch.Tensor, "AttackBatch"], torch.Tensor]
#: ``target_fn(x, y) -> target labels``
TargetFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class AttackBatch:
    """What one call attacks: the clean images, the true labels and the optional goals.

    All tensors are detached and on the images' device.
    """

    x: torch.Tensor                              #: clean images (N, C, H, W) in [0, 1]
    y: torch.Tensor                              #: true labels (N,), long
    target: Optional[torch.Tensor] = None        #: target labels (N,), long (targeted attack)
    target_map: Optional[torch.Tensor] = None    #: maps the adversarial maps should match (N, ...)

    @property
    def targeted(self) -> bool:
        return self.target is not None

    @property
    def labels(self) -> torch.Tensor:
        """The labels the loss is computed against: the targets if targeted, else ``y``."""
        return self.target if self.target is not None else self.y


class Crafted(NamedTuple):
    """What :meth:`Attack.forward` returns: the adversarial images and, per sample (or one
    int for all), the iterations that produced them."""

    adv: torch.Tensor
    iterations: torch.Tensor | int


@dataclass
class AttackResult:
    """Per-sample records of one :meth:`Attack.run`. Every field but ``adv`` is (N,).

    ``success``: ``prediction != label`` (untargeted) or ``prediction == target`` (targeted);
    ``confidence``: softmax probability of the predicted class on ``adv``; ``iterations``: the
    iterations after which each returned image was found; ``time_s``: the batch's wall time
    divided equally among its samples (the attack runs batched).
    """

    adv: torch.Tensor
    label: torch.Tensor
    target: Optional[torch.Tensor]
    prediction: torch.Tensor
    confidence: torch.Tensor
    success: torch.Tensor
    iterations: torch.Tensor
    time_s: torch.Tensor

    def __len__(self) -> int:
        return len(self.adv)

    @property
    def targeted(self) -> bool:
        return self.target is not None

    def to(self, device) -> "AttackResult":
        return AttackResult(**{f.name: None if getattr(self, f.name) is None
                               else getattr(self, f.name).to(device) for f in fields(self)})

    @classmethod
    def cat(cls, results: Sequence["AttackResult"]) -> "AttackResult":
        """Concatenate the results of consecutive batches (all targeted or all untargeted)."""
        results = list(results)
        if not results:
            raise ValueError("no results to concatenate")
        if len({r.targeted for r in results}) > 1:
            raise ValueError("cannot concatenate targeted and untargeted results")
        return cls(**{f.name: None if getattr(results[0], f.name) is None
                      else torch.cat([getattr(r, f.name) for r in results])
                      for f in fields(cls)})

    def records(self) -> dict[str, np.ndarray]:
        """The per-sample columns (everything but ``adv``) as numpy arrays."""
        return {f.name: getattr(self, f.name).detach().cpu().numpy() for f in fields(self)
                if f.name != "adv" and getattr(self, f.name) is not None}


def random_other_class(num_classes: int, generator: torch.Generator | None = None) -> TargetFn:
    """A ``target_fn``: a uniformly random class other than the true one,
    ``(y + randint(1, num_classes)) mod num_classes`` (AdvEdge's target choice, docs/settings.md).
    Draws on ``generator`` (CPU) when given, so the targets are reproducible on any device."""
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    num_classes = int(num_classes)

    def target_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shift = torch.randint(1, num_classes, y.shape, generator=generator)
        return (y + shift.to(y.device)) % num_classes

    return target_fn


def check_nonnegative(name: str, value) -> float:
    """``value`` as a float >= 0 (NaN rejected), else a ValueError naming ``name``."""
    value = float(value)
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def check_choice(name: str, value, allowed) -> str:
    """``value`` if it is one of ``allowed``, else a ValueError naming ``name``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}")
    return value


def check_steps(name: str, value) -> int:
    """``value`` as an int >= 1, else a ValueError naming ``name``."""
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


class Attack:
    """Base class: stores the model and the objective, checks the inputs, dispatches to
    :meth:`forward`, and records per-sample results in :meth:`run`.

    ``eps``: the budget (in ``norm``), or None for attacks without one; ``loss``: replaces
    :func:`torch.nn.functional.cross_entropy`; ``extra_loss``: a term minimised in addition;
    ``target_fn``: makes the attack targeted, choosing the targets when a call gives none.
    """

    #: the norm of the perturbation budget ``eps`` ("linf", "l2"), or None for attacks without a
    #: budget (C&W, StAdv), which then take ``eps=None`` only
    norm: ClassVar[Optional[str]] = "linf"
    #: whether the attack itself uses ``target_map`` (interpretation-aware attacks); others take
    #: a target map only together with an ``extra_loss`` that receives it
    uses_target_map: ClassVar[bool] = False
    #: whether the attack is targeted only (a call needs ``target=`` or a ``target_fn``)
    requires_target: ClassVar[bool] = False

    def __init__(self, model: nn.Module, eps: float | None = None, *,
                 loss: LossFn | None = None, extra_loss: ExtraLossFn | None = None,
                 target_fn: TargetFn | None = None):
        name = type(self).__name__
        if self.norm is None:
            if eps is not None:
                raise ValueError(f"{name} has no perturbation budget: eps must be None, "
                                 f"got {eps!r}")
        elif eps is None:
            raise ValueError(f"{name} has an {self.norm} budget: eps must be a number >= 0, "
                             f"got None")
        else:
            eps = check_nonnegative("eps", eps)
        for arg, fn in (("loss", loss), ("extra_loss", extra_loss), ("target_fn", target_fn)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{arg} must be callable, got {type(fn).__name__}")
        self.model = model
        self.eps = eps
        self.loss = loss
        self.extra_loss = extra_loss
        self.target_fn = target_fn

    @property
    def targeted(self) -> bool:
        """Whether calls without ``target=`` are targeted (a ``target_fn`` was given)."""
        return self.target_fn is not None

    # ------------------------------------------------------------------ calling

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, *,
                 target: torch.Tensor | None = None,
                 target_map: torch.Tensor | None = None) -> torch.Tensor:
        """Adversarial images: the inputs' shape, dtype and device, detached, in [0, 1]."""
        batch = self._batch(images, labels, target, target_map)
        return self._craft(batch)[0].to(dtype=images.dtype)

    def run(self, images: torch.Tensor, labels: torch.Tensor, *,
            target: torch.Tensor | None = None,
            target_map: torch.Tensor | None = None) -> AttackResult:
        """Attack and record per sample: prediction and confidence of the model on the
        adversarial images (one more forward pass, without gradients), success, iterations,
        time."""
        batch = self._batch(images, labels, target, target_map)
        _sync(batch.x)
        t0 = time.perf_counter()
        adv, iterations = self._craft(batch)
        _sync(batch.x)
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            prob = torch.softmax(self.model(adv).float(), dim=1)
        confidence, prediction = prob.max(dim=1)
        success = prediction == batch.target if batch.targeted else prediction != batch.y
        n = len(adv)
        return AttackResult(
            adv=adv.to(dtype=images.dtype), label=batch.y, target=batch.target,
            prediction=prediction, confidence=confidence, success=success,
            iterations=iterations,
            time_s=torch.full((n,), seconds / max(n, 1), dtype=torch.float64,
                              device=adv.device))

    def forward(self, batch: AttackBatch) -> Crafted:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ objective

    def objective(self, adv: torch.Tensor, logits: torch.Tensor,
                  batch: AttackBatch) -> torch.Tensor:
        """The scalar the attack ascends: ``loss(logits, y)`` (untargeted) or
        ``-loss(logits, target)`` (targeted), minus ``extra_loss(adv, logits, batch)``."""
        loss_fn = self.loss if self.loss is not None else F.cross_entropy
        value = _scalar(loss_fn(logits, batch.labels), logits)
        if batch.targeted:
            value = -value
        if self.extra_loss is not None:
            value = value - _scalar(self.extra_loss(adv, logits, batch), logits)
        return value

    def gradient(self, adv: torch.Tensor, batch: AttackBatch) -> torch.Tensor:
        """Gradient of :meth:`objective` w.r.t. ``adv`` (zero where the objective does not
        depend on it); nothing reaches the parameters' ``.grad``."""
        adv = adv.detach().requires_grad_(True)
        value = self.objective(adv, self.model(adv), batch)
        if not value.requires_grad:
            return torch.zeros_like(adv)
        (grad,) = torch.autograd.grad(value, adv, allow_unused=True)
        return torch.zeros_like(adv) if grad is None else grad

    # ------------------------------------------------------------------ internals

    def _batch(self, images, labels, target, target_map) -> AttackBatch:
        name = type(self).__name__
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            raise ValueError(f"images must be a (N, C, H, W) tensor, got "
                             f"{tuple(getattr(images, 'shape', ()))}")
        if not images.is_floating_point():
            raise ValueError(f"images must be floating point in [0, 1], got {images.dtype}")
        n = images.shape[0]
        if tuple(labels.shape) != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
        x = images.detach()
        if n and not (x.min() >= 0 and x.max() <= 1):
            raise ValueError(f"images must lie in [0, 1], got [{x.min().item():g}, "
                             f"{x.max().item():g}] (normalisation belongs inside the model)")
        y = labels.detach().to(device=x.device, dtype=torch.long)
        if target is None and self.target_fn is not None:
            target = self.target_fn(x, y)
        if target is None and self.requires_target:
            raise ValueError(f"{name} is a targeted attack: pass target= or give a target_fn")
        if target is not None:
            target = torch.as_tensor(target).detach().to(device=x.device, dtype=torch.long)
            if tuple(target.shape) != (n,):
                raise ValueError(f"target must have shape ({n},), got {tuple(target.shape)}")
        if target_map is not None:
            if not (self.uses_target_map or self.extra_loss is not None):
                raise ValueError(f"{name} does not use target_map: give it an extra_loss that "
                                 f"does, or drop target_map")
            target_map = torch.as_tensor(target_map).detach().to(device=x.device)
            if target_map.dim() == 0 or target_map.shape[0] != n:
                raise ValueError(f"target_map must hold one map per image ({n}), got shape "
                                 f"{tuple(target_map.shape)}")
        return AttackBatch(x=x, y=y, target=target, target_map=target_map)

    def _craft(self, batch: AttackBatch) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            adv, iterations = self.forward(batch)
        n = len(batch.x)
        iterations = torch.as_tensor(iterations, device=batch.x.device).to(torch.long)
        if iterations.dim() == 0:
            iterations = iterations.expand(n).clone()
        if tuple(iterations.shape) != (n,):
            raise RuntimeError(f"{type(self).__name__}.forward returned iterations of shape "
                               f"{tuple(iterations.shape)}, expected ({n},)")
        return adv.detach(), iterations

    def hyperparameters(self) -> dict:
        """The settings shown by ``repr`` (everything but the model and unset hooks)."""
        return {k: v for k, v in vars(self).items() if k != "model" and v is not None}

    def __repr__(self) -> str:
        def show(v):
            return getattr(v, "__qualname__", None) or repr(v) if callable(v) else repr(v)

        hyper = ", ".join(f"{k}={show(v)}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({hyper})"


def _scalar(value, like: torch.Tensor) -> torch.Tensor:
    value = torch.as_tensor(value, device=like.device) if not isinstance(value, torch.Tensor) \
        else value
    return value.sum() if value.dim() else value


def _sync(x: torch.Tensor) -> None:
    if x.is_cuda:
        torch.cuda.synchronize(x.device)
