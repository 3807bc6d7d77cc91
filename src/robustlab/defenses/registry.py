"""Defenses by name: everything the CLI, experiment files, Python and the checkpoint loader need
to know about a defense, declared once by the defense's own module.

A `Defense` holds

- ``check(**params)``: validates the parameters and returns the resolved settings; its
  signature *is* the parameter list (names and defaults), with ``help`` / ``flags`` / ``parse``
  for the command line (`Defense.params`);
- ``build(model, data, settings) -> DefenseBuild``: trains / fits the defended model;
- ``structure(base, **args)``: the untrained structure a checkpoint's "defense" section
  describes (the loader then fills every weight, thresholds included);
- optionally ``measure(model, base, x, y)`` (extra test accuracies for ``defend``),
  ``companions(model)`` (further checkpoints ``defend`` saves beside it) and ``switches``
  (a ``--flag`` of its ``defend`` command that builds another defense instead).

``register_defense(Defense(...))`` adds it to `DEFENSES`; `robustlab defend` builds one
subcommand per defense from it, so a plugin's defense is a command too. Training a defense is
`robustlab.defenses.build.build_defense`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from robustlab.core.contract import RobustModel
from robustlab.core.errors import ConfigError
from robustlab.core.registry import Registry
from robustlab.defenses.base import DefenseBuild
from robustlab.models.classifier import Classifier


@dataclass(frozen=True)
class Param:
    """One parameter of a defense: `default` (its type gives the option's type; a list or tuple
    is a repeatable option), `help`, the command-line `flags`, and `parse` from command-line
    text to the value (then the option takes text)."""

    name: str
    default: Any
    help: str = ""
    flags: tuple[str, ...] = ()
    parse: Callable[[str], Any] | None = None

    @property
    def repeatable(self) -> bool:
        return isinstance(self.default, list | tuple)


@dataclass(frozen=True)
class Defense:
    """A defense, declared in its own module; see the module docstring."""

    name: str
    summary: str
    check: Callable[..., Any]
    build: Callable[[Classifier, Any, Any], DefenseBuild]
    structure: Callable[..., RobustModel]
    command: str = ""
    aliases: tuple[str, ...] = ()
    help: Mapping[str, str] = field(default_factory=dict)
    flags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    parse: Mapping[str, Callable[[str], Any]] = field(default_factory=dict)
    switches: Mapping[str, str] = field(default_factory=dict)
    measure: Callable[[RobustModel, RobustModel, torch.Tensor, torch.Tensor], dict[str, float]] | None = None
    companions: Callable[[RobustModel], dict[str, RobustModel]] | None = None

    def params(self) -> list[Param]:
        """The named parameters, in the order of `check`'s signature (a ``**kwargs`` is not one)."""
        return [
            Param(p.name, p.default, self.help.get(p.name, ""), self.flags.get(p.name, ()), self.parse.get(p.name))
            for p in inspect.signature(self.check).parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def resolve(self, params: Mapping[str, Any]) -> Any:
        """`check` on `params`: unknown names (unless `check` takes ``**kwargs``) and bad values (a
        `TypeError` or `ValueError` from `check`) are one `ConfigError`."""
        known = [p.name for p in self.params()]
        unknown = sorted(set(params) - set(known))
        any_name = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(self.check).parameters.values())
        if unknown and not any_name:
            raise ConfigError(f"defense {self.name}: unknown parameters {unknown}; valid: {known}")
        try:
            return self.check(**params)
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"defense {self.name}: {exc}") from None


DEFENSES: Registry[Defense] = Registry("defense")


def register_defense(defense: Defense, *, replace: bool = False) -> Defense:
    """Add `defense` under its name and aliases (its `defend` command: `command` or the name)."""
    return DEFENSES.register(defense.name, defense, aliases=defense.aliases, replace=replace)


def defense_structure(spec: Mapping[str, Any], base: Classifier) -> RobustModel:
    """The defended structure described by a checkpoint's "defense" section, over `base`."""
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ConfigError("a defense section needs a 'name' (and optional 'args')")
    defense = DEFENSES.get(spec["name"])
    args = dict(spec.get("args") or {})
    try:
        return defense.structure(base, **args)
    except TypeError as exc:
        raise ConfigError(f"invalid arguments for defense {spec['name']!r}: {exc}") from None
