"""Defenses, registered by kind; this module is torch-free.

Kinds (:data:`KINDS`):

* ``model``: transforms of a trained model, applied at evaluation
  (:func:`apply_model_defense`; ``none``, ``cfn``, ``batchstat``; :mod:`.model`);
* ``input``: transforms of the input images before the model sees them
  (:func:`apply_input_defense`; ``median``, ``bitsqueeze``; :mod:`.input`);
* ``training``: defenses applied while training, e.g. adversarial training
  (:class:`.training.TrainingDefense` subclasses: ``adversarial``, ``interpretation_robust``).

Every defense name is defined once, in :data:`DEFENSES`: name -> kind, ``"module:attr"`` import
path (relative to this package) and a one-line description. The torch code lives in the
submodules and is imported on first use, so the Snakemake planning code can import this
module (names, kinds, descriptions) without torch. Adding a defense: its code in a submodule
and one line in :data:`DEFENSES`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # never executed; also tells the code hash (xaisec.workflow.codehash) which
    # submodules the lazy import paths below reach
    from xaisec.defenses import input, model, training  # noqa: F401

#: the kinds of defense, in the order they act: on the model, on its inputs, on its training
KINDS = ("model", "input", "training")


@dataclass(frozen=True)
class DefenseSpec:
    """A registry entry: ``path`` is ``"module:attr"``, the module relative to this package.

    The attribute is, by kind: ``model`` -- ``fn(model, **settings) -> defended copy``;
    ``input`` -- ``fn(images, **settings) -> images``; ``training`` -- a
    :class:`~xaisec.defenses.training.TrainingDefense` subclass (``cls(**settings)``).
    """

    name: str
    kind: str
    path: str
    description: str
    #: the keyword arguments it takes (config validation reads them without importing torch)
    settings: tuple = ()

    def load(self) -> Any:
        """Import and return the defense's function (or class)."""
        module, _, attr = self.path.partition(":")
        return getattr(importlib.import_module(module, __name__), attr)


#: defense name -> entry
DEFENSES: dict[str, DefenseSpec] = {s.name: s for s in (
    DefenseSpec("none", "model", ".model:no_defense",
                "the model as it is: its own BatchNorm with running statistics"),
    DefenseSpec("cfn", "model", ".model:cfn",
                "CFN (the CFN paper's text): BatchNorm -> current-batch statistics, no affine"),
    DefenseSpec("batchstat", "model", ".model:batchstat",
                "the CFN authors' evaluation code: current-batch statistics, learned affine"),
    DefenseSpec("median", "input", ".input:median_smoothing",
                "median smoothing over a size x size window (Xu et al. 2018; AdvEdge's MS)",
                ("size",)),
    DefenseSpec("bitsqueeze", "input", ".input:bit_squeezing",
                "bit-depth reduction to `bits` bits (Xu et al. 2018; AdvEdge's BS)", ("bits",)),
    DefenseSpec("adversarial", "training", ".adversarial:AdversarialTraining",
                "PGD adversarial training on copies of 50, 100 and 150 iterations (AdvEdge's "
                "AT)", ("eps", "alpha", "steps", "include_clean")),
    DefenseSpec("interpretation_robust", "training",
                ".interpretation_robust:InterpretationRobustTraining",
                "CE + gamma x the worst-case 2-class interpretation discrepancy (Boopathy et "
                "al. 2020; AdvEdge Table VI)",
                ("explainer", "gamma", "eps", "alpha", "steps", "seed", "explainer_settings")),
)}

for _s in DEFENSES.values():  # a wrong kind is a programming error: fail on import
    if _s.kind not in KINDS:
        raise ValueError(f"defense {_s.name!r} has unknown kind {_s.kind!r}; kinds: {KINDS}")
del _s


def names(kind: str | None = None) -> tuple[str, ...]:
    """The registered defense names (of one kind), in registry order."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown defense kind {kind!r}; kinds: {', '.join(KINDS)}")
    return tuple(n for n, s in DEFENSES.items() if kind is None or s.kind == kind)


def spec(name: str) -> DefenseSpec:
    """The registry entry of ``name`` (ValueError naming the known ones if unknown)."""
    try:
        return DEFENSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown defense {name!r}; known: {', '.join(DEFENSES)}") from None


def get_defense(name: str) -> Any:
    """The function (model and input kinds) or class (training kind) of defense ``name``."""
    return spec(name).load()


def _of_kind(name: str, kind: str) -> Any:
    s = spec(name)
    if s.kind != kind:
        raise ValueError(f"defense {name!r} is of kind {s.kind!r}, not {kind!r}; {kind} "
                         f"defenses: {', '.join(names(kind))}")
    return s.load()


def apply_model_defense(model, name: str, **settings):
    """A copy of ``model`` with model defense ``name`` applied (``model`` is left untouched;
    ``none`` gives a plain copy); ``settings`` go to the defense (``cfn``: ``eps``)."""
    return _of_kind(name, "model")(model, **settings)


def apply_input_defense(x, name: str, **settings):
    """Images ``x`` (N, C, H, W) in [0, 1] after input defense ``name`` with ``settings``
    (``median``: ``size``; ``bitsqueeze``: ``bits``)."""
    return _of_kind(name, "input")(x, **settings)


__all__ = ["DEFENSES", "KINDS", "DefenseSpec", "apply_input_defense", "apply_model_defense",
           "get_defense", "names", "spec"]
