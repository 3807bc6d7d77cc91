"""`build_defense(name, model, data, **params)`: train/fit a defense of a trained model.

The one entry point used by the CLI (`robustlab defend ...`), experiment specs and Python::

    built = build_defense("squeeze-detector", model, dataset, squeezers=["bits:4", "median:2"], fpr=0.05)
    built.model      # the defended model (same contract; save it with save_checkpoint)
    built.info       # what the build measured (thresholds, validation FPR, losses, seconds)

`model` is a trained `Classifier` (left unchanged); `data` a `Dataset` or a pair
(x_train, y_train) of images in [0, 1] and labels. Defenses that fit a threshold or tune
on validation data hold out a stratified ``val_fraction`` (default 0.1) of the training
images and train on the rest. Every parameter is checked before anything is trained.

The defenses and their parameters (names, defaults, help) are declared by their own modules
in `robustlab.defenses.registry.DEFENSES`: ``robustlab defend NAME --help`` lists them.
"""

from __future__ import annotations

import time
from typing import Any

from robustlab.core.contract import RobustModel
from robustlab.core.errors import ConfigError
from robustlab.data.dataset import Dataset
from robustlab.defenses.base import DefenseBuild
from robustlab.defenses.registry import DEFENSES
from robustlab.models.classifier import Classifier


def defense_names() -> list[str]:
    return DEFENSES.names()


def check_defense_params(name: str, **params: Any) -> str:
    """Validate `params` for defense `name` (one ConfigError naming the problem); return the name."""
    defense = DEFENSES.get(name)
    defense.resolve(params)
    return defense.name


def build_defense(name: str, model: RobustModel, data: Dataset | tuple, **params: Any) -> DefenseBuild:
    """Train/fit defense `name` of `model` (unchanged) on `data`; see the module docstring."""
    defense = DEFENSES.get(name)
    settings = defense.resolve(params)
    if not isinstance(model, Classifier):
        raise ConfigError(f"a defense is built over a trained robustlab Classifier, got {type(model).__name__}")
    start = time.perf_counter()
    built = defense.build(model, data, settings)
    built.model.eval()
    built.info = {"defense": defense.name, "params": params, **built.info, "seconds": time.perf_counter() - start}
    return built
