"""`Registry[T]`: the one name table of robustlab (attacks, defenses, heads, backbones, objectives,
adversarial-training methods, squeezers, data sets, report sections, executors, attack losses,
success criteria).

Names are case-insensitive (stored lower-case); an alias resolves to its name. Every registry
answers an unknown name with the same `UnknownNameError` line: the kind, the name, the closest
known name (`difflib`, else one that starts the name or that the name starts) and every known
one. Registering a taken name (or alias) is refused unless ``replace=True``; registering the same
object again under its own name is a no-op (a module imported twice). Plugins add entries by
importing (`robustlab.core.plugins`)::

    ATTACKS.register("my-attack", MyAttack, aliases=("mine",))
    @HEADS.register("my-head")
    class MyHead(Head): ...
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar, overload

from robustlab.core.errors import ConfigError

T = TypeVar("T")
U = TypeVar("U")

_MISSING: Any = object()


class UnknownNameError(ConfigError):
    """A name no registry entry (or alias) holds; the message lists the known ones."""


def _key(name: object, kind: str) -> str:
    if not isinstance(name, str):
        raise ConfigError(f"a {kind} name must be a string, got {type(name).__name__}")
    return name.strip().lower()


class Registry(Generic[T]):
    """Named entries of one `kind` (the word used in error messages: "attack", "defense", ...);
    `also`: names a caller resolves before the registry (such as ``folder:<path>``), listed in
    the error after the registered ones."""

    def __init__(self, kind: str, also: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.also = also
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    @overload
    def register(self, name: str, *, aliases: Iterable[str] = ..., replace: bool = ...) -> Callable[[U], U]: ...

    @overload
    def register(self, name: str, item: U, *, aliases: Iterable[str] = ..., replace: bool = ...) -> U: ...

    def register(self, name: str, item: Any = _MISSING, *, aliases: Iterable[str] = (), replace: bool = False) -> Any:
        """Add `item` under `name` (and `aliases`); without `item`, a decorator that does so."""
        if item is _MISSING:
            return lambda obj: self.register(name, obj, aliases=aliases, replace=replace)
        key = _key(name, self.kind)
        if not key:
            raise ConfigError(f"a {self.kind} name must not be empty")
        alias_keys = [_key(a, self.kind) for a in aliases]
        if key in self._items and self._items[key] == item and all(self._aliases.get(a) == key for a in alias_keys):
            return item
        if not replace:
            taken = [n for n in (key, *alias_keys) if n in self._items or n in self._aliases]
            if taken:
                raise ConfigError(f"{self.kind} {taken[0]!r} is already registered; pass replace=True to replace it")
        self._aliases.pop(key, None)
        self._items[key] = item
        for alias in alias_keys:
            self._items.pop(alias, None)
            self._aliases[alias] = key
        return item

    def remove(self, name: object) -> T:
        """Take the entry called `name` out (its aliases too) and return it."""
        key = self.canonical(name)
        for alias in [a for a, target in self._aliases.items() if target == key]:
            del self._aliases[alias]
        return self._items.pop(key)

    def canonical(self, name: object) -> str:
        """The registered name `name` stands for (itself, or the name of an alias)."""
        key = _key(name, self.kind)
        key = self._aliases.get(key, key)
        if key not in self._items:
            raise UnknownNameError(self._unknown(name))
        return key

    def get(self, name: object) -> T:
        """The entry called `name` (or one of its aliases); `UnknownNameError` otherwise."""
        return self._items[self.canonical(name)]

    def _unknown(self, name: object) -> str:
        known = self.names()
        key, candidates = _key(name, self.kind), [*known, *self._aliases]
        close = difflib.get_close_matches(key, candidates, n=1) or [
            c for c in candidates if key.startswith(c) or c.startswith(key)][:1]
        hint = f" (did you mean {self._aliases.get(close[0], close[0])!r}?)" if close else ""
        shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:77] + "..."
        return f"unknown {self.kind} {shown}{hint}; known: {', '.join([*known, *self.also]) or '(none)'}"

    def names(self) -> list[str]:
        """The registered names (aliases left out), sorted."""
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        """(name, entry), sorted by name."""
        return sorted(self._items.items(), key=lambda kv: kv[0])

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _key(name, self.kind)
        return key in self._items or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
