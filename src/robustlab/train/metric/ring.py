"""The `ring` objective: cross-entropy + ring loss with a learned (or fixed) radius R."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from robustlab.core.errors import ConfigError
from robustlab.losses.ring import ring_loss
from robustlab.train.objectives import Objective, ObjectiveOutput, register_objective


class RingObjective(Objective):
    """CE(head(f), y) + lambda/2 * mean (||f|| - R)^2 (paper 002 eq. 2.9).

    ``weight`` is lambda >= 0. ``radius`` None learns R (initialized to the mean feature norm
    of the first batch, stepped by its own SGD optimizer with ``radius_lr``); a float fixes R.
    """

    def __init__(
        self, model, weight: float = 0.01, radius: float | None = None, radius_lr: float = 0.01
    ) -> None:
        super().__init__()
        if weight < 0 or (radius is not None and radius <= 0):
            raise ConfigError("ring: weight must be >= 0 and a fixed radius > 0")
        self.weight = float(weight)
        self.learn_radius = radius is None
        self.radius = nn.Parameter(torch.tensor(float(radius or 0.0)), requires_grad=self.learn_radius)
        self.radius_lr = float(radius_lr)
        self._initialized = not self.learn_radius

    def extra_optimizer(self) -> torch.optim.Optimizer | None:
        return torch.optim.SGD([self.radius], lr=self.radius_lr) if self.learn_radius else None

    def forward(self, model, x: torch.Tensor, y: torch.Tensor, epoch: int) -> ObjectiveOutput:
        features = model.embed(x)
        if not self._initialized:
            with torch.no_grad():
                self.radius.fill_(features.norm(dim=1).mean())
            self._initialized = True
        scores = model.head(features)
        ring = ring_loss(features, self.radius, self.weight)
        logs = {"ring": float(ring.detach()), "R": float(self.radius.detach())}
        return ObjectiveOutput(F.cross_entropy(scores, y) + ring, scores, logs)


register_objective("ring")(RingObjective)
