"""Prototype conformity loss (Mustafa et al. 2019, paper 004 eq. 5) and its decision (eq. 6)."""

from __future__ import annotations

import torch


def prototype_distances(features: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (N, C) between features (N, D) and class centres (C, D)."""
    diff = features[:, None, :] - centres[None, :, :]
    return diff.pow(2).sum(-1).clamp_min(1e-12).sqrt()


def prototype_conformity(
    features: torch.Tensor, labels: torch.Tensor, centres: torch.Tensor, separation: float = 1.0
) -> torch.Tensor:
    """Eq. 5, averaged over the batch (the paper sums over i; the factor 1/N is a learning-rate scale):

    ||f_i - w_{y_i}|| - separation/(k-1) * sum_{j != y_i} (||f_i - w_j|| + ||w_{y_i} - w_j||)

    features (N, D), labels (N,) int64 in [0, k), centres (k, D) with k >= 2. ``separation`` is
    1 in eq. 5; the term is unbounded below, so without weight decay features and centres can
    drift apart for ever (the authors' code weighs it far below 1).
    """
    k = centres.shape[0]
    d_feat = prototype_distances(features, centres)  # (N, k)
    d_centres = prototype_distances(centres, centres)  # (k, k), zero on the diagonal
    own = d_feat.gather(1, labels[:, None]).squeeze(1)
    others_feat = d_feat.sum(1) - own
    others_centres = d_centres[labels].sum(1) - d_centres[labels, labels]
    return (own - separation * (others_feat + others_centres) / (k - 1)).mean()
