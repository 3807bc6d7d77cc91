"""`ModelConfig`: the plain, JSON-able description a model is built from."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from robustlab.core.errors import ConfigError

_FIELDS = ("backbone", "head", "num_classes", "input_shape", "backbone_args", "head_args", "normalize")


@dataclass(frozen=True)
class ModelConfig:
    """backbone + head, the task's size, and optional per-channel normalization.

    ``normalize`` is ``{"mean": [...], "std": [...]}`` (one value per channel) applied
    inside the model, so the model still takes images in [0, 1].
    """

    backbone: str
    head: str
    num_classes: int
    input_shape: tuple[int, int, int]
    backbone_args: dict[str, Any] = field(default_factory=dict)
    head_args: dict[str, Any] = field(default_factory=dict)
    normalize: dict[str, list[float]] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ConfigError(f"num_classes must be an integer >= 2, got {self.num_classes!r}")
        shape = tuple(self.input_shape)
        if len(shape) != 3 or any(not isinstance(v, int) or v < 1 for v in shape):
            raise ConfigError(f"input_shape must be three positive ints (C, H, W), got {self.input_shape!r}")
        if shape[0] not in (1, 3):
            raise ConfigError(f"input_shape must have 1 or 3 channels, got {shape[0]}")
        object.__setattr__(self, "input_shape", shape)
        from robustlab.models.heads import HEADS  # registers every head

        keyed = getattr(HEADS.get(self.head), "keyed_defaults", {}) if self.head in HEADS else {}
        if keyed:  # a default that changes the decision is written into the config, so keys name it
            object.__setattr__(self, "head_args", {**keyed, **self.head_args})
        if self.normalize is not None:
            mean, std = self.normalize.get("mean"), self.normalize.get("std")
            if mean is None or std is None or len(mean) != shape[0] or len(std) != shape[0]:
                raise ConfigError("normalize needs 'mean' and 'std' with one value per channel")
            if any(s <= 0 for s in std):
                raise ConfigError("normalize std values must be positive")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Build from a plain mapping; unknown or missing keys raise `ConfigError`."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a model config must be a mapping, got {type(data).__name__}")
        unknown = set(data) - set(_FIELDS)
        if unknown:
            raise ConfigError(f"unknown model config keys {sorted(unknown)}; known: {list(_FIELDS)}")
        missing = {"backbone", "head", "num_classes", "input_shape"} - set(data)
        if missing:
            raise ConfigError(f"model config is missing {sorted(missing)}")
        kwargs = dict(data)
        kwargs["input_shape"] = tuple(kwargs["input_shape"])
        kwargs["backbone_args"] = dict(kwargs.get("backbone_args") or {})
        kwargs["head_args"] = dict(kwargs.get("head_args") or {})
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    def digest(self) -> str:
        """A short, stable hash of the config (names checkpoints and store rows)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]
