"""Evasion attacks: one base class (:mod:`.base`), one file per attack, one registry.

``make_attack(name, model, **hyperparameters)(images, labels)`` returns adversarial images
(torchattacks' call shape); ``.run(...)`` returns per-sample records
(:class:`~xaisec.attacks.base.AttackResult`). Adding an attack: a file with an
:class:`~xaisec.attacks.base.Attack` subclass and one line in :data:`ATTACKS`.
"""
from __future__ import annotations

from torch import nn

from xaisec.attacks.base import (Attack, AttackBatch, AttackResult, Crafted, ExtraLossFn, LossFn, TargetFn,
                   random_other_class)
from xaisec.attacks.advedge import InterpretationPGD
from xaisec.attacks.bim import BIM
from xaisec.attacks.cw import InterpretationCW
from xaisec.attacks.fgsm import FGSM
from xaisec.attacks.pgd import PGD
from xaisec.attacks.stadv import InterpretationStAdv

#: attack name (lower case) -> class
ATTACKS: dict[str, type[Attack]] = {
    "fgsm": FGSM,
    "bim": BIM,
    "pgd": PGD,
    "advedge_pgd": InterpretationPGD,   # ADV2 / AdvEdge / AdvEdge+ (variant=...), targeted only
    "advedge_cw": InterpretationCW,     # the same in the C&W L2 framework
    "advedge_stadv": InterpretationStAdv,   # the same in the StAdv (flow) framework
}


def register_attack(name: str, cls: type[Attack], *, replace: bool = False) -> type[Attack]:
    """Add ``cls`` to :data:`ATTACKS` under ``name`` (case-insensitive); returns ``cls``."""
    key = str(name).lower()
    if not (isinstance(cls, type) and issubclass(cls, Attack)):
        raise TypeError(f"{cls!r} is not an Attack subclass")
    if key in ATTACKS and ATTACKS[key] is not cls and not replace:
        raise ValueError(f"attack {key!r} is already registered ({ATTACKS[key].__name__})")
    ATTACKS[key] = cls
    return cls


def make_attack(name: str, model: nn.Module, **kw) -> Attack:
    """Build the attack registered as ``name`` (case-insensitive) with hyperparameters ``kw``."""
    key = str(name).lower()
    if key not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; known: {', '.join(sorted(ATTACKS))}")
    return ATTACKS[key](model, **kw)


__all__ = ["ATTACKS", "Attack", "AttackBatch", "AttackResult", "BIM", "Crafted", "ExtraLossFn",
           "FGSM", "InterpretationCW", "InterpretationPGD", "InterpretationStAdv", "LossFn", "PGD", "TargetFn", "make_attack", "random_other_class",
           "register_attack"]
