"""ArcFace, additive angular margin loss (Deng et al. 2019; paper 002 eq. 2.8), on
pytorch-metric-learning's ``ArcFaceLoss`` with its class weights tied to the head's.

    L = -1/N sum_i log( e^{s cos(theta_{y_i} + m)} / (e^{s cos(theta_{y_i} + m)} + sum_{j != y_i} e^{s cos theta_j}) )

pml matches eq. 2.8 whenever theta_{y_i} <= pi - m; beyond, where cos(theta + m) stops
decreasing, it uses cos(theta) - m sin(m) (the insightface fix keeping the logit monotonic).
pml takes the margin in degrees; here ``margin`` is in radians, ``scale`` is s.
"""

from __future__ import annotations

import math

import torch
from pytorch_metric_learning import losses
from torch import nn

from robustlab.core.errors import ConfigError


class ArcFaceLoss(nn.Module):
    """ArcFace loss on features (N, D) against ``weight`` (D, C), a parameter shared with the head."""

    def __init__(self, weight: nn.Parameter, scale: float = 30.0, margin: float = 0.5) -> None:
        super().__init__()
        if not (scale > 0 and 0 <= margin < math.pi / 2):
            raise ConfigError(f"ArcFace needs scale > 0 and 0 <= margin < pi/2, got s={scale}, m={margin}")
        d, c = weight.shape
        self.loss = losses.ArcFaceLoss(num_classes=c, embedding_size=d, margin=math.degrees(margin), scale=scale)
        self.loss.W = weight  # tie: the head's weight is the loss's class-weight matrix

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss(features, labels)
