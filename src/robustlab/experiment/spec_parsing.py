"""Shared checks of the experiment-file parsers: one `ConfigError` line naming where the problem is."""

from __future__ import annotations

from typing import Any, NoReturn

from robustlab.core.errors import ConfigError
from robustlab.core.threat import parse_eps
from robustlab.experiment.limits import short_repr
from robustlab.experiment.spec_parts import ModelSpec


def fail(where: str, msg: str) -> NoReturn:
    raise ConfigError(f"{where}: {msg}")


def known_keys(where: str, doc: dict[str, Any], known: set[str]) -> None:
    unknown = set(doc) - known
    if unknown:
        fail(where, f"unknown keys {sorted(unknown)}; known: {sorted(known)}")


def eps_list(where: str, value: Any) -> tuple[float, ...]:
    """A list of budgets, numbers or fractions as the field writes them ([0, 2/255, 8/255]), as floats."""
    if not isinstance(value, (list, tuple)):
        fail(where, f"eps must be a list of numbers (or fractions such as 8/255), got {value!r}")
    if not value:
        fail(where, "eps must list at least one budget, e.g. [0, 0.1] or [0, 8/255]")
    return tuple(parse_eps(e, f"{where}: eps[{i}]") for i, e in enumerate(value))


def budget_value(where: str, key: str, value: Any) -> Any:
    """`value` as a float when `key` (a path's last part) is a budget written as a fraction ("8/255")."""
    name = key.split(".")[-1]
    is_budget = name == "eps" or name.startswith("eps_")
    return parse_eps(value, f"{where}: {key}") if is_budget and isinstance(value, str) else value


def named_entry(where: str, item: Any) -> dict[str, Any]:
    """An attacks / defenses entry as a mapping with a name (a bare string is the name)."""
    entry = {"name": item} if isinstance(item, str) else item
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        name = entry.get("name") if isinstance(entry, dict) else entry
        fail(where, f"needs a name (a string), got {short_repr(name)}")
    return entry


def model_ids(where: str, value: Any, models: tuple[ModelSpec, ...]) -> tuple[str, ...] | None:
    """An entry's ``models:`` filter: None (every model), or ids / base ids of models of the file."""
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        fail(where, f"models must be a non-empty list of model ids, got {value!r}")
    for name in value:
        resolve_models(f"{where}.models", str(name), models, None)
    return tuple(map(str, value))


def resolve_models(where: str, name: str, models: tuple[ModelSpec, ...], data: str | None) -> list[ModelSpec]:
    """The models `name` refers to: an expanded id, an id without its seed suffix (every seed), or
    a base id (every sweep point / data set / seed)."""
    hits = ([m for m in models if m.id == name] or [m for m in models if m.group == name]
            or [m for m in models if m.family == name])
    hits = [m for m in hits if data is None or m.data == data]
    if not hits:
        known = ", ".join(m.id for m in models)[:300]
        fail(where, f"{short_repr(name)} is not a model of this file (models: {known})")
    return hits
