"""SVDD hinge losses with negative examples (Mygdalis et al. 2020, eq. 8, 11, 12).

Every function takes the squared kernel-space distances ``dist2`` (N, C) of N samples to
the C hypersphere centres, ``dist2[i, c] = k_ii - 2 k~^T u_c + u_c^T K~_c u_c`` (eq. 10),
and the squared radii ``radius2`` (C,). Sample i is a positive of class c when
``labels[i] == c`` and a negative of every other class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F


def positive_hinge(dist2: torch.Tensor, radius2: torch.Tensor) -> torch.Tensor:
    """Eq. 11, elementwise: max(0, ||phi(x) - a||^2 - R^2); > 0 for positives outside the sphere."""
    return torch.relu(dist2 - radius2)


def negative_hinge(dist2: torch.Tensor, radius2: torch.Tensor) -> torch.Tensor:
    """Eq. 12, elementwise: max(0, R^2 - ||phi(x) - a||^2); > 0 for negatives inside the sphere."""
    return torch.relu(radius2 - dist2)


@dataclass
class SVDDLossTerms:
    """The scalar loss and its parts (each summed over classes, averaged within a class)."""

    loss: torch.Tensor
    radius: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor


def svdd_loss(
    dist2: torch.Tensor,
    radius2: torch.Tensor,
    labels: torch.Tensor,
    c_p: float = 10.0,
    c_n: float = 10.0,
    use_negatives: bool = True,
    radius_weight: float = 1.0,
) -> SVDDLossTerms:
    """The primal objective of eq. 8 with the hinges of eq. 11-12 as slacks, for all C classes at once.

    ``loss = radius_weight * sum_c R_c^2 + c_p * sum_c mean_{i in pos(c)} L_p[i, c]
    + c_n * sum_c mean_{i in neg(c)} L_n[i, c]``. The hinges are averaged within each class
    (not summed over samples) so that c_p and c_n do not depend on the batch size or on the
    C - 1 : 1 imbalance of negatives to positives; at a fixed centre the radius then settles
    where ``c_p * (fraction of positives outside) = radius_weight + c_n * (fraction of
    negatives inside)``. ``use_negatives=False`` is the first training stage (eq. 11 only).
    """
    positives = F.one_hot(labels, dist2.shape[1]).to(dist2.dtype)
    negatives = 1.0 - positives
    lp = (positive_hinge(dist2, radius2) * positives).sum(0) / positives.sum(0).clamp_min(1.0)
    ln = (negative_hinge(dist2, radius2) * negatives).sum(0) / negatives.sum(0).clamp_min(1.0)
    radius_term = radius_weight * radius2.sum()
    pos_term = c_p * lp.sum()
    neg_term = c_n * ln.sum() if use_negatives else torch.zeros_like(pos_term)
    return SVDDLossTerms(radius_term + pos_term + neg_term, radius_term, pos_term, neg_term)
