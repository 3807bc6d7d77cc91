"""Defense structures by name, so that a checkpoint's "defense" section can rebuild a defended model.

A structure builder takes the base `Classifier` (already built from the checkpoint's
"model" section) and the section's "args", and returns the untrained defended structure;
the checkpoint loader then fills every weight (thresholds included) from the safetensors
file. A defended model offers ``defense_spec() -> {"name": ..., "args": {...}}`` and keeps
its base as ``.base``. Training a defense from a model and data is `robustlab.defenses.build`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from robustlab.core.contract import RobustModel
from robustlab.core.errors import ConfigError
from robustlab.defenses.distill import DistilledModel
from robustlab.defenses.magnet import MagNetModel
from robustlab.defenses.squeeze import SqueezeDetector, SqueezedModel
from robustlab.defenses.svdd.model import build_msvdd_structure
from robustlab.models.classifier import Classifier
from robustlab.models.registry import Registry

DEFENSES: Registry[RobustModel] = Registry("defense")
DEFENSES.register("msvdd")(build_msvdd_structure)
DEFENSES.register("distillation")(DistilledModel)
DEFENSES.register("squeeze")(SqueezedModel)
DEFENSES.register("squeeze-detector")(SqueezeDetector)
DEFENSES.register("magnet")(MagNetModel)


def defense_structure(spec: Mapping[str, Any], base: Classifier) -> RobustModel:
    """The defended structure described by a checkpoint's "defense" section, over `base`."""
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ConfigError("a defense section needs a 'name' (and optional 'args')")
    builder = DEFENSES.get(spec["name"])
    args = dict(spec.get("args") or {})
    try:
        return builder(base, **args)
    except TypeError as exc:
        raise ConfigError(f"invalid arguments for defense {spec['name']!r}: {exc}") from None
