"""Plugins: Python modules the user names; importing one registers its attacks, defenses, heads,
backbones, objectives, data sets, report sections, executors, ... in robustlab's registries
(`robustlab.core.registry`).

Three ways in, all code the user chose to run (DESIGN.md, "Security model"):

- ``robustlab --plugin pkg.mod ...`` (repeatable) on the command line;
- ``plugins: [pkg.mod]`` in an experiment file (imported on the driver and on every worker);
- the entry points of installed distributions in the group ``robustlab.plugins``
  (``[project.entry-points."robustlab.plugins"] name = "pkg.mod"``), loaded once per process by
  the CLI and by the experiment's workers.

A failure to import (an exception, a syntax error, a `sys.exit` in the plugin) is one `ConfigError`.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Sequence
from importlib import metadata

from robustlab.core.errors import ConfigError

ENTRY_POINT_GROUP = "robustlab.plugins"

_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_LOADED: set[str] = set()
"""Entry points already loaded in this process ("<name>=<value>")."""
_SCANNED: list[tuple[str, ...]] = []
"""The `sys.path` the entry points were last looked up on (installed distributions live there)."""
_FOR_WORKERS: dict[str, None] = {}
"""Modules imported with ``for_workers`` (the command line's ``--plugin``), in order."""


def check_module_name(value: object, where: str = "plugin") -> str:
    """`value` as an absolute dotted module name (``pkg.mod``); relative names and paths are refused."""
    if not isinstance(value, str) or not _MODULE.fullmatch(value):
        shown = repr(value) if isinstance(value, str | int | float | bool | type(None)) else type(value).__name__
        raise ConfigError(f"{where} must be an absolute module name such as mypkg.attacks, got {shown[:60]}")
    return value


def _failure(what: str, exc: BaseException) -> ConfigError:
    detail = " ".join(str(exc).split())[:300] or "(no message)"
    return ConfigError(f"{what} cannot be imported: {type(exc).__name__}: {detail}")


def import_plugins(modules: Sequence[str], *, for_workers: bool = False) -> None:
    """Import each module (once: Python caches it); any failure is one `ConfigError`.
    `for_workers`: every experiment this process runs gives them to its workers too (`--plugin`)."""
    for name in modules:
        check_module_name(name)
        try:
            importlib.import_module(name)
        except (Exception, SystemExit) as exc:
            raise _failure(f"plugin {name!r}", exc) from None
        if for_workers:
            _FOR_WORKERS[name] = None


def worker_plugins(declared: Sequence[str] = ()) -> tuple[str, ...]:
    """The modules a worker must import: `declared` (an experiment's ``plugins:``) and those imported
    here for the workers (``--plugin``), each once, in order."""
    return tuple(dict.fromkeys([*declared, *_FOR_WORKERS]))


def load_entry_points() -> list[str]:
    """Load every entry point of the ``robustlab.plugins`` group not loaded yet in this process;
    return their names. Any failure is one `ConfigError` naming the entry point. The look-up
    (about 10 ms) runs again only when `sys.path` has changed since the last one."""
    if [tuple(sys.path)] == _SCANNED:
        return []
    loaded = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        key = f"{ep.name}={ep.value}"
        if key in _LOADED:
            continue
        try:
            ep.load()
        except (Exception, SystemExit) as exc:
            raise _failure(f"plugin entry point {ep.name!r} ({ep.value})", exc) from None
        _LOADED.add(key)
        loaded.append(ep.name)
    _SCANNED[:] = [tuple(sys.path)]
    return loaded
