"""Parsing of repeated `key=value` options (values read as YAML scalars: 3, 0.1, true, [1, 2])."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from robustlab.core.errors import ConfigError


def parse_pairs(pairs: Sequence[str] | None, option: str) -> dict[str, Any]:
    """["steps=40", "norm=l2"] -> {"steps": 40, "norm": "l2"}; malformed pairs raise `ConfigError`."""
    out: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option} expects key=value, got {pair!r}")
        try:
            out[key.strip().replace("-", "_")] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key.strip().replace("-", "_")] = value
    return out
