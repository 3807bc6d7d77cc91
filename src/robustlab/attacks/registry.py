"""Attacks by name, for configs and the CLI: `make_attack("pgd", eps=0.1, steps=40)`.

Each attack module registers its class with ``@register_attack`` (under the class's `name`, with
its `aliases`); importing `robustlab.attacks` imports every built-in one, and a plugin registers
its own the same way. This module imports no attack, so an attack may build others by name.
"""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

from robustlab.attacks.base import Attack
from robustlab.core.errors import ConfigError
from robustlab.core.registry import Registry

A = TypeVar("A", bound=type[Attack])

ATTACKS: Registry[type[Attack]] = Registry("attack")


def register_attack(cls: A, *, replace: bool = False) -> A:
    """Add an attack class under its `name` and its own `aliases` (a class decorator)."""
    return ATTACKS.register(cls.name, cls, aliases=cls.__dict__.get("aliases", ()), replace=replace)


def get_attack_class(name: str) -> type[Attack]:
    """The attack class called `name` (or an alias: ``apgd-ce``, ``hopskipjump``, ...)."""
    return ATTACKS.get(name)


def attack_parameters(name: str) -> dict[str, inspect.Parameter]:
    """The constructor parameters of attack `name` (for `--help` and validation)."""
    return get_attack_class(name).parameters()


def make_attack(name: str, **params: Any) -> Attack:
    """Build attack `name` with `params`; unknown parameters raise `ConfigError` naming the valid ones."""
    cls = get_attack_class(name)
    known = cls.parameters()
    unknown = set(params) - set(known)
    if unknown:
        raise ConfigError(f"{name}: unknown parameters {sorted(unknown)}; valid: {sorted(known)}")
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"{name}: {exc}") from None
