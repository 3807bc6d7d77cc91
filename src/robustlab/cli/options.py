"""Parsing of repeated `key=value` options (values read as YAML scalars: 3, 0.1, true, [1, 2]) and
of budgets (`--eps 8/255`, `-p eps=8/255`: `robustlab.core.threat.parse_eps`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import typer
import yaml

from robustlab.core.errors import ConfigError
from robustlab.core.threat import parse_eps


def eps_value(text: str) -> float:
    """A typer `parser` for budget options: "8/255" or "0.1" -> float; a bad value is click's
    one-line "Invalid value for '--eps': ..." (exit code 2)."""
    try:
        return parse_eps(text, "eps")
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None


def _is_budget(key: str) -> bool:
    return key == "eps" or key.startswith("eps_")


def parse_pairs(pairs: Sequence[str] | None, option: str) -> dict[str, Any]:
    """["steps=40", "norm=l2"] -> {"steps": 40, "norm": "l2"}; malformed pairs raise `ConfigError`."""
    out: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option} expects key=value, got {pair!r}")
        name = key.strip().replace("-", "_")
        try:
            out[name] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[name] = value
        if _is_budget(name) and isinstance(out[name], str):  # eps=8/255
            out[name] = parse_eps(out[name], f"{option} {name}")
    return out
