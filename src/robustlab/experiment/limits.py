"""Bounds on what an experiment file may ask for, checked before anything is built or run.

An experiment file is data from anyone (see DESIGN.md, "Security model"), so reading one is
bounded and every value that becomes a path is a plain name:

- `read_document`: at most `Limits.values` x `BYTES_PER_VALUE` bytes of text, nesting at most `MAX_DEPTH` deep, no
  recursive alias, and at most `Limits.values` values once aliases are expanded (a
  "billion laughs" file is refused while it is still a small graph of nodes, before any object
  is built from it);
- `plain_data`: every value is JSON-like and finite (no YAML dates or sets, no NaN/infinity);
- `plain_name`: a name, id or sweep point that names a directory (the run directory's
  ``runs/<name>``, ``checkpoints/<id>``, ``defenses/<id>/<defense>``) is one path component:
  no separator, no leading dot, no ``:`` (it splits result keys), no control character, short;
- `Limits.trainings` / `Limits.cells`: the plan's size (models and defended models to train;
  evaluation and transfer cells), counted before the first task; `robustlab run` raises them
  with ``--max-trainings``, ``--max-cells`` and ``--max-values``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from robustlab.core.errors import ConfigError

BYTES_PER_VALUE = 10
"""An experiment file may be at most `Limits.values` x this many bytes (1 MB by default: real
files are a few KiB, and PyYAML reads about 100 KB a second)."""
MAX_DEPTH = 64
"""The deepest nesting of mappings and lists a file may have."""
NAME_BYTES = 200
"""The longest name or id in UTF-8 bytes (file systems allow 255 per component; the rest is
left for the staging names a checkpoint is published through)."""
_BAD_NAME = re.compile(r"[/\\:\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Limits:
    """The largest experiment run accepts without being asked (each >= 1).

    `values`: scalars, lists and mappings in the file after aliases are expanded;
    `trainings`: models to train (every sweep point on every data set) plus defended models
    to build; `cells`: evaluation cells (model x defense x attack x eps) plus transfer cells."""

    values: int = 100_000
    trainings: int = 500
    cells: int = 50_000

    def __post_init__(self) -> None:
        for name, flag in (("values", "--max-values"), ("trainings", "--max-trainings"), ("cells", "--max-cells")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{flag} must be an integer >= 1, got {value!r}")

    def check(self, what: str, count: int, name: str, flag: str) -> None:
        """ConfigError naming `count` when it exceeds the limit `name` (raised by `flag`)."""
        limit = getattr(self, name)
        if count > limit:
            raise ConfigError(f"{what}: {count:,} is more than the limit of {limit:,} ({flag} raises it)")


def plain_name(value: Any, where: str) -> str:
    """`value` (a string, or an integer written without quotes) as one plain path component.

    Refused: empty, a leading '.' ('.', '..', hidden names), '/', '\\\\', ':', NUL and other
    control characters, surrounding spaces, more than `NAME_BYTES` bytes."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(f"{where} must be a name (a string), got {short_repr(value)}")
    text = str(value)
    bad = _BAD_NAME.search(text)
    if not text.strip() or text != text.strip() or text.startswith(".") or bad \
            or len(text.encode("utf-8", "surrogatepass")) > NAME_BYTES:
        why = (f"it holds {bad.group()!r}" if bad else "it starts with '.'" if text.startswith(".")
               else f"it is longer than {NAME_BYTES} bytes" if text.strip() and text == text.strip()
               else "it is empty or has surrounding spaces")
        raise ConfigError(f"{where} must be a plain name (it names a directory: no '/', '\\', ':', "
                          f"no leading '.', at most {NAME_BYTES} bytes), got {short_repr(text)}: {why}")
    return text


_JSON_SCALARS = (str, int, float, bool, type(None))


def plain_data(where: str, value: Any, depth: int = 0) -> None:
    """ConfigError unless `value` is what JSON holds: strings, finite numbers, booleans, null,
    lists and mappings with string keys (YAML dates, binary data, sets, NaN and infinities
    would fail later, or never end: ``epochs: .inf``)."""
    if depth > MAX_DEPTH:
        raise ConfigError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{where}: keys must be strings, got {short_repr(k)}")
            plain_data(f"{where}.{k}" if len(where) < 80 else where, v, depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            plain_data(f"{where}[{i}]" if len(where) < 80 else where, v, depth + 1)
    elif not isinstance(value, _JSON_SCALARS):
        raise ConfigError(f"{where}: a {type(value).__name__} is not an experiment value "
                          "(strings, numbers, true/false, null, lists and mappings; quote it)")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {value} is not a finite number")


def short_repr(value: Any, width: int = 60) -> str:
    """A short repr for an error line (a hostile value can be huge)."""
    text = repr(value) if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__
    return text if len(text) <= width else text[:width] + "..."


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader whose composer refuses nesting deeper than `MAX_DEPTH` (before Python's
    recursion limit is reached) and stops once it has composed more than `max_nodes` nodes."""

    depth = 0
    nodes = 0
    max_nodes = Limits.values

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        self.nodes += 1
        try:
            mark = self.peek_event().start_mark
            if self.depth > MAX_DEPTH:
                raise ConfigError(f"nesting deeper than {MAX_DEPTH} levels at line {mark.line + 1}")
            if self.nodes > self.max_nodes:
                raise ConfigError(f"more than {self.max_nodes:,} values (--max-values raises the limit)")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def expanded_size(root: yaml.Node | None, limit: int) -> int:
    """Values in the document under `root` once aliases are expanded (every node counts once
    per place it appears). Linear in the distinct nodes; a recursive alias is a ConfigError."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in active:
            raise ConfigError(f"a recursive alias at line {node.start_mark.line + 1}")
        active.add(id(node))
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        active.discard(id(node))
        sizes[id(node)] = min(total, limit + 1)  # saturate: only "more than the limit" matters
        return sizes[id(node)]

    return 0 if root is None else size(root)


def read_document(path: Path, limits: Limits) -> Any:
    """The YAML (or JSON) document at `path`, bounded as the module says; ConfigError otherwise."""
    try:
        most = limits.values * BYTES_PER_VALUE
        with path.open("rb") as f:
            raw = f.read(most + 1)
        if len(raw) > most:
            raise ConfigError(f"{path} is larger than {most:,} bytes: not an experiment file "
                              f"(the limit is {BYTES_PER_VALUE} bytes per value; --max-values raises it)")
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {' '.join(str(exc).split())}") from None
    loader = _BoundedLoader(text)
    loader.max_nodes = limits.values
    try:
        try:
            node = loader.get_single_node()
            if expanded_size(node, limits.values) > limits.values:
                raise ConfigError(f"more than {limits.values:,} values once its aliases are expanded "
                                  "(--max-values raises the limit)")
            return None if node is None else loader.construct_document(node)
        finally:
            loader.dispose()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # e.g. an int of 5,000 digits
        raise ConfigError(f"{path} holds a value YAML cannot read: {' '.join(str(exc).split())[:200]}") from None
