"""Defenses: wrappers that turn a model into a defended model under the same contract.

- `build_defense(name, model, data, **params)`: train/fit a defense (`robustlab.defenses.build`);
- `defense_structure(spec, base)`: rebuild a saved defense's structure (checkpoint loading);
- `DEFENSES` / `register_defense`: every defense, declared by its own module (importing this
  package registers the built-in ones; a plugin registers its own);
- the defenses: distillation (`DistilledModel`), feature squeezing as a transform
  (`SqueezedModel`) or a detector (`SqueezeDetector`), MagNet (`MagNetModel`), M-SVDD
  (`robustlab.defenses.svdd`); `true_gradients` turns their BPDA paths off for a block.
"""

from robustlab.defenses.base import DefendedModel, DefenseBuild, DetectorModel, fit_threshold, true_gradients
from robustlab.defenses.build import build_defense, check_defense_params, defense_names
from robustlab.defenses.distill import DistillConfig, DistilledModel, distill, soft_labels
from robustlab.defenses.magnet import MagNetConfig, MagNetModel, build_magnet
from robustlab.defenses.registry import DEFENSES, Defense, Param, defense_structure, register_defense
from robustlab.defenses.squeeze import SqueezeDetector, SqueezedModel
from robustlab.defenses.squeezers import make_squeezer
from robustlab.defenses.svdd import build_msvdd

__all__ = [
    "DEFENSES",
    "DefendedModel",
    "Defense",
    "DefenseBuild",
    "DetectorModel",
    "DistillConfig",
    "DistilledModel",
    "MagNetConfig",
    "MagNetModel",
    "Param",
    "SqueezeDetector",
    "SqueezedModel",
    "build_defense",
    "build_magnet",
    "build_msvdd",
    "check_defense_params",
    "defense_names",
    "defense_structure",
    "distill",
    "fit_threshold",
    "make_squeezer",
    "register_defense",
    "soft_labels",
    "true_gradients",
]
