"""Training-time defenses: the model is trained (or fine-tuned) with the defense, e.g.
adversarial training (the AdvEdge paper's AT, Madry et al.), rather than transformed afterwards.

A training-time defense is a :class:`TrainingDefense` subclass registered in
:mod:`xaisec.defenses` with kind ``"training"``; :func:`xaisec.defenses.get_defense` returns the
class, built with the defense's settings, and the training loop calls :meth:`loss` on every
batch in place of the plain cross-entropy (:meth:`loss_and_logits`, which also gives the
logits the epoch's training accuracy is counted on).
"""
from __future__ import annotations

import abc

import torch
from torch import nn


class TrainingDefense(abc.ABC):
    """One training-time defense with its settings (given to ``__init__``)."""

    @abc.abstractmethod
    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The scalar training loss of one batch (images ``x`` in [0, 1], labels ``y``),
        differentiable w.r.t. the model's parameters; the model is in training mode."""

    def loss_and_logits(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple:
        """(:meth:`loss`, the (N, classes) logits the training accuracy is counted on, or None
        when the defense has none to offer); subclasses return the logits they computed."""
        return self.loss(model, x, y), None

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v!r}" for k, v in vars(self).items()
                          if not k.startswith("_"))   # settings only (no generator state)
        return f"{type(self).__name__}({hyper})"
