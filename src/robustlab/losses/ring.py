"""Ring loss (Zheng et al. 2018; paper 002 eq. 2.9): a soft feature-norm constraint."""

from __future__ import annotations

import torch


def ring_loss(features: torch.Tensor, radius: torch.Tensor | float, weight: float) -> torch.Tensor:
    """lambda / (2N) * sum_i (||f_i||_2 - R)^2 for features (N, D); `weight` is lambda >= 0.

    `radius` R is a scalar (a learned 0-d parameter or a fixed float), in feature units.
    """
    norms = features.norm(dim=1)
    return 0.5 * weight * (norms - radius).pow(2).mean()
