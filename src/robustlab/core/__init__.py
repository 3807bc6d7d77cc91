"""Shared types: the model contract, `AttackResult`, the threat model (norms, budgets, attack kinds),
errors, validation, devices and seeding."""

from robustlab.core.contract import REJECT, RobustModel, batched_predict, eval_mode
from robustlab.core.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    InputError,
    RobustlabError,
)
from robustlab.core.results import AttackResult
from robustlab.core.runtime import pick_device, seed_everything, seeded
from robustlab.core.threat import AttackKind, Budget, Norm, check_eps
from robustlab.core.validation import check_images, check_labels

__all__ = [
    "REJECT",
    "AttackKind",
    "Budget",
    "Norm",
    "check_eps",
    "AttackResult",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "InputError",
    "RobustModel",
    "RobustlabError",
    "batched_predict",
    "eval_mode",
    "check_images",
    "check_labels",
    "pick_device",
    "seed_everything",
    "seeded",
]
