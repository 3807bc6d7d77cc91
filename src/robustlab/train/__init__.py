"""Training recipes: the trainer, its objectives, and checkpoints of what it trains."""

from robustlab.train import metric  # noqa: E402,F401  (registers the metric-head objectives)
from robustlab.train.adversarial import AdvConfig
from robustlab.train.objectives import (
    OBJECTIVES,
    CrossEntropy,
    Objective,
    ObjectiveOutput,
    make_objective,
    register_objective,
)
from robustlab.train.trainer import EpochLog, TrainConfig, train

__all__ = [
    "AdvConfig",
    "OBJECTIVES",
    "CrossEntropy",
    "EpochLog",
    "Objective",
    "ObjectiveOutput",
    "TrainConfig",
    "make_objective",
    "register_objective",
    "train",
]
