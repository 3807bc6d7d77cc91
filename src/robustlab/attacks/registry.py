"""Attacks by name, for configs and the CLI: `make_attack("pgd", eps=0.1, steps=40)`."""

from __future__ import annotations

import inspect
from typing import Any

from robustlab.attacks.base import Attack
from robustlab.attacks.fgsm import FGSM
from robustlab.attacks.pgd import PGD
from robustlab.core.errors import ConfigError

ATTACKS: dict[str, type[Attack]] = {"fgsm": FGSM, "pgd": PGD}


def register_attack(cls: type[Attack]) -> type[Attack]:
    """Add an attack class under its `name` (a class decorator)."""
    if cls.name in ATTACKS and ATTACKS[cls.name] is not cls:
        raise ValueError(f"attack {cls.name!r} registered twice")
    ATTACKS[cls.name] = cls
    return cls


def attack_parameters(name: str) -> dict[str, inspect.Parameter]:
    """The constructor parameters of attack `name` (for `--help` and validation)."""
    cls = get_attack_class(name)
    params: dict[str, inspect.Parameter] = {}
    for klass in reversed(cls.__mro__):
        if "__init__" in vars(klass) and issubclass(klass, Attack):
            for p in inspect.signature(klass.__init__).parameters.values():
                if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                    params[p.name] = p
    return params


def get_attack_class(name: str) -> type[Attack]:
    try:
        return ATTACKS[name.lower()]
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
