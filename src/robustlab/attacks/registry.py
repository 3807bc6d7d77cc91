"""Attacks by name, for configs and the CLI: `make_attack("pgd", eps=0.1, steps=40)`."""

from __future__ import annotations

import inspect
from typing import Any

from robustlab.attacks.apgd import APGD, APGDT
from robustlab.attacks.autoattack import AutoAttack
from robustlab.attacks.base import Attack
from robustlab.attacks.bim import BIM
from robustlab.attacks.cw import CarliniWagnerL2
from robustlab.attacks.deepfool import DeepFool
from robustlab.attacks.fab import FAB, FABT
from robustlab.attacks.fgsm import FGSM
from robustlab.attacks.hopskipjump import HopSkipJump
from robustlab.attacks.jsma import JSMA
from robustlab.attacks.lbfgs import LBFGS
from robustlab.attacks.mim import MIM
from robustlab.attacks.pgd import PGD
from robustlab.attacks.rfgsm import RFGSM
from robustlab.attacks.square import Square
from robustlab.attacks.transfer import Transfer
from robustlab.core.errors import ConfigError

ATTACKS: dict[str, type[Attack]] = {
    cls.name: cls
    for cls in (
        FGSM, RFGSM, BIM, MIM, PGD, APGD, APGDT, CarliniWagnerL2, DeepFool, LBFGS, JSMA,
        FAB, FABT, Square, HopSkipJump, Transfer, AutoAttack,
    )
}


def register_attack(cls: type[Attack]) -> type[Attack]:
    """Add an attack class under its `name` (a class decorator)."""
    if cls.name in ATTACKS and ATTACKS[cls.name] is not cls:
        raise ValueError(f"attack {cls.name!r} registered twice")
    ATTACKS[cls.name] = cls
    return cls


def attack_parameters(name: str) -> dict[str, inspect.Parameter]:
    """The constructor parameters of attack `name` (for `--help` and validation)."""
    return get_attack_class(name).parameters()


ALIASES: dict[str, str] = {"hopskipjump": "hsj", "carlini-wagner": "cw", "apgd-ce": "apgd", "apgd-dlr-t": "apgd-t"}
"""Other names users reach for; each maps to a registered attack."""


def get_attack_class(name: str) -> type[Attack]:
    try:
        key = name.lower()
        return ATTACKS[ALIASES.get(key, key)]
    except KeyError:
        raise ConfigError(f"unknown attack {name!r}; choose one of {', '.join(sorted(ATTACKS))}") from None


def make_attack(name: str, **params: Any) -> Attack:
    """Build attack `name` with `params`; unknown parameters raise `ConfigError` naming the valid ones."""
    cls = get_attack_class(name)
    known = attack_parameters(name)
    unknown = set(params) - set(known)
    if unknown:
        raise ConfigError(f"{name}: unknown parameters {sorted(unknown)}; valid: {sorted(known)}")
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"{name}: {exc}") from None
