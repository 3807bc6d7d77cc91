"""The `triplet` and `contrastive` objectives: metric losses on P x K batches of embeddings."""

from __future__ import annotations

import torch

from robustlab.losses.contrastive import contrastive_loss
from robustlab.losses.triplet import TripletLoss
from robustlab.train.metric.sampler import pk_batches
from robustlab.train.objectives import Objective, ObjectiveOutput, register_objective


class PKObjective(Objective):
    """Base of objectives drawing P classes x ``images_per_class`` (K) images per batch."""

    def __init__(self, images_per_class: int = 4) -> None:
        super().__init__()
        self.images_per_class = int(images_per_class)

    def make_batches(self, labels: torch.Tensor, batch_size: int, generator: torch.Generator):
        return pk_batches(labels, batch_size, self.images_per_class, generator)


class TripletObjective(PKObjective):
    """Mined triplet loss (``mining`` semihard | hard | all, ``margin`` on normalized distances)."""

    def __init__(
        self, model, margin: float = 0.2, mining: str = "semihard", images_per_class: int = 4
    ) -> None:
        super().__init__(images_per_class)
        self.loss = TripletLoss(margin=margin, mining=mining)

    def forward(self, model, x: torch.Tensor, y: torch.Tensor, epoch: int) -> ObjectiveOutput:
        return ObjectiveOutput(self.loss(model.embed(x), y))


class ContrastiveObjective(PKObjective):
    """Contrastive loss (paper 002 eq. 2.13) on every in-batch pair, negatives mined inside ``margin``."""

    def __init__(self, model, margin: float = 1.0, images_per_class: int = 4) -> None:
        super().__init__(images_per_class)
        self.margin = float(margin)

    def forward(self, model, x: torch.Tensor, y: torch.Tensor, epoch: int) -> ObjectiveOutput:
        return ObjectiveOutput(contrastive_loss(model.embed(x), y, self.margin))


register_objective("triplet")(TripletObjective)
register_objective("contrastive")(ContrastiveObjective)
