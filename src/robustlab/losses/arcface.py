"""ArcFace, additive angular margin loss (Deng et al. 2019; paper 002 eq. 2.8).

    L = -1/N sum_i log( e^{s cos(theta_y + m)} / (e^{s cos(theta_y + m)} + sum_{j != y} e^{s cos theta_j}) )

cos(theta + m) is computed as cos(theta) cos(m) - sin(theta) sin(m), never through acos:
pytorch-metric-learning's ``ArcFaceLoss`` takes acos of the cosine, whose gradient is
infinite when a feature aligns with its class weight (cos = 1), and training then turns to NaN.
The values agree with pml (a test checks both against a naive loop). Like pml and insightface,
where theta_y > pi - m (cos(theta + m) would start increasing) the target logit is
cos(theta) - m sin(m) instead.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from robustlab.core.errors import ConfigError


def arcface_logits(
    features: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, scale: float, margin: float
) -> torch.Tensor:
    """s * cos(theta_j) (N, C), with the true class's logit replaced by s * cos(theta_y + m).

    features (N, D), weight (D, C) (one column per class), margin m in radians."""
    cos = F.normalize(features, dim=1) @ F.normalize(weight, dim=0)
    cos_y = cos.gather(1, labels[:, None]).clamp(-1.0, 1.0)
    sin_y = (1.0 - cos_y.pow(2)).clamp_min(1e-12).sqrt()
    shifted = cos_y * math.cos(margin) - sin_y * math.sin(margin)
    target = torch.where(cos_y > -math.cos(margin), shifted, cos_y - margin * math.sin(margin))
    return scale * cos.scatter(1, labels[:, None], target)


class ArcFaceLoss(nn.Module):
    """ArcFace loss on features (N, D) against ``weight`` (D, C), a parameter shared with the head.

    ``scale`` is s > 0; ``margin`` is m in radians, [0, pi/2)."""

    def __init__(self, weight: nn.Parameter, scale: float = 30.0, margin: float = 0.5) -> None:
        super().__init__()
        if not (scale > 0 and 0 <= margin < math.pi / 2):
            raise ConfigError(f"ArcFace needs scale > 0 and 0 <= margin < pi/2, got s={scale}, m={margin}")
        self.weight = weight
        self.scale = float(scale)
        self.margin = float(margin)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(arcface_logits(features, self.weight, labels, self.scale, self.margin), labels)
