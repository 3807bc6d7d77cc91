"""Name -> constructor registries for backbones and heads, with clear errors for unknown names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from robustlab.core.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A dictionary of named constructors; `get` raises `ConfigError` listing the known names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorate(fn: Callable[..., T]) -> Callable[..., T]:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = fn
            return fn

        return decorate

    def get(self, name: str) -> Callable[..., T]:
        key = str(name).lower()
        if key not in self._items:
            raise ConfigError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self.names())}")
        return self._items[key]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items
