"""Training objectives: (model, x, y) -> loss, chosen by name.

An objective is an `nn.Module`; parameters of its own (class centres, say) are trained
by the optimizer `extra_optimizer` returns, separately from the model's. It may also
choose how batches are drawn (`make_batches`, e.g. P classes x K images for metric losses).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from robustlab.core.contract import RobustModel
from robustlab.core.errors import ConfigError
from robustlab.core.registry import Registry


@dataclass
class ObjectiveOutput:
    """The scalar loss to minimise, the scores it saw (for training accuracy), and logs."""

    loss: torch.Tensor
    scores: torch.Tensor | None = None
    logs: dict[str, float] = field(default_factory=dict)


class Objective(nn.Module):
    """Base objective: subclasses implement `forward(model, x, y, epoch) -> ObjectiveOutput`."""

    evaluates_each_epoch: bool = False
    """True when `end_epoch` judges the model (the trainer then refreshes k-NN galleries first)."""

    def end_epoch(self, model: RobustModel, epoch: int) -> dict[str, float]:
        """Called after each epoch (from 0) with the model in eval mode; what it returns goes
        into the epoch's log (`EpochLog.extra`). Default: nothing."""
        return {}

    def extra_optimizer(self) -> torch.optim.Optimizer | None:
        """An optimizer for the objective's own parameters, or None when it has none.

        Model parameters it holds (PCL class centres) are left out of the trainer's main
        optimizer, so each parameter is stepped by exactly one optimizer."""
        return None

    def make_batches(self, labels: torch.Tensor, batch_size: int, generator: torch.Generator):
        """Index batches for one epoch: a seeded random permutation cut into `batch_size` chunks."""
        order = torch.randperm(len(labels), generator=generator)
        return list(order.split(batch_size))


class CrossEntropy(Objective):
    """Cross-entropy on the model's scores (``label_smoothing`` in [0, 1))."""

    def __init__(self, model: RobustModel, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = float(label_smoothing)

    def forward(self, model: RobustModel, x: torch.Tensor, y: torch.Tensor, epoch: int) -> ObjectiveOutput:
        scores = model(x)
        loss = F.cross_entropy(scores, y, label_smoothing=self.label_smoothing)
        return ObjectiveOutput(loss, scores)


ObjectiveFactory = Callable[..., Objective]
OBJECTIVES: Registry[ObjectiveFactory] = Registry("objective")
OBJECTIVES.register("cross_entropy", CrossEntropy)


def register_objective(name: str) -> Callable[[ObjectiveFactory], ObjectiveFactory]:
    """Register an objective factory `(model, **args) -> Objective` under `name` (a decorator)."""
    return OBJECTIVES.register(name)


def make_objective(name: str, model: RobustModel, **args) -> Objective:
    """Objective `name` for `model`; unknown names or arguments raise `ConfigError`."""
    factory = OBJECTIVES.get(name)
    try:
        return factory(model, **args)
    except TypeError as exc:
        raise ConfigError(f"objective {name}: {exc}") from None
