"""The `arcface` objective: ArcFace loss with the head's weights, s and m (paper 002 eq. 2.8)."""

from __future__ import annotations

import torch

from robustlab.core.errors import ConfigError
from robustlab.losses.arcface import ArcFaceLoss
from robustlab.train.objectives import Objective, ObjectiveOutput, register_objective


class ArcFaceObjective(Objective):
    """ArcFace on the backbone features; s and m come from the head (``scale``, ``margin``)."""

    def __init__(self, model) -> None:
        super().__init__()
        head = getattr(model, "head", None)
        if head is None or not hasattr(head, "margin") or not hasattr(head, "weight"):
            raise ConfigError("the arcface objective needs a model with an arcface head")
        self.loss = ArcFaceLoss(head.weight, scale=head.scale, margin=head.margin)

    def forward(self, model, x: torch.Tensor, y: torch.Tensor, epoch: int) -> ObjectiveOutput:
        features = model.embed(x)
        return ObjectiveOutput(self.loss(features, y), model.head(features))


register_objective("arcface")(ArcFaceObjective)
