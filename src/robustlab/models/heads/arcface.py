"""The ArcFace head (paper 002 eq. 2.8): cosine logits between normalized features and
normalized class weights, scaled by s. The margin m only enters training (`arcface` objective)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from robustlab.models.heads.base import HEADS, Head


@HEADS.register("arcface")
class ArcFaceHead(Head):
    """Scores s * cos(theta_j) (N, C), in [-s, s]; decision = argmax = the closest class angle.

    ``scale`` is s > 0, ``margin`` is m in radians [0, pi/2) (used by the objective).
    ``weight`` has shape (D, C), the layout pytorch-metric-learning's ArcFaceLoss uses.
    """

    objective = "arcface"

    def __init__(self, feature_dim: int, num_classes: int, scale: float = 30.0, margin: float = 0.5) -> None:
        super().__init__(feature_dim, num_classes)
        self.scale = float(scale)
        self.margin = float(margin)
        self.weight = nn.Parameter(torch.empty(feature_dim, num_classes))
        nn.init.xavier_normal_(self.weight)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(features, dim=1) @ F.normalize(self.weight, dim=0)
