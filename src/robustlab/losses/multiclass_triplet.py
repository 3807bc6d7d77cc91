"""Multi-class (N-pair) triplet loss on cosine similarity with hardest-negative mining, as used
by MCT (Appiah et al. 2020, paper 003 eq. 1-2). Written here: its noisy-anchor / per-class
hardest-negative structure is not a pytorch-metric-learning miner.

For anchor a with positive p and one negative n_c per other class c present in the pool (the
pool member of class c most cosine-similar to a, "the nearest image from a false class"):

    L(a) = log(1 + sum_c exp(cos(a, n_c) - cos(a, p) + margin))

Eq. 1 of the paper writes exp(dist + alpha) with dist = cos(a, n) - cos(a, p); its alpha is
ambiguous with the alpha weighting L_MCT in eq. 4, so the margin here is a separate argument,
0 by default as in Sohn's N-pair loss. Eq. 2 prints |x_i . x_j| in the numerator; we use the
signed cosine (the absolute value would reward opposite embeddings as "similar").
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarities (N, M) between rows of a (N, D) and b (M, D), in [-1, 1]."""
    return F.normalize(a, dim=1) @ F.normalize(b, dim=1).T


def hardest_negative_per_class(
    anchors: torch.Tensor,
    anchor_labels: torch.Tensor,
    pool: torch.Tensor,
    pool_labels: torch.Tensor,
    num_classes: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each anchor and class c: the largest cosine to a pool member of class c (N, C), and
    a mask (N, C) of the classes that count as negatives (present in the pool, not the anchor's)."""
    cos = cosine_matrix(anchors, pool)
    index = pool_labels[None, :].expand_as(cos)
    hardest = cos.new_zeros(len(anchors), num_classes).scatter_reduce(
        1, index, cos, reduce="amax", include_self=False
    )
    present = torch.zeros(num_classes, dtype=torch.bool, device=pool.device)
    present[pool_labels] = True
    classes = torch.arange(num_classes, device=pool.device)
    valid = present[None, :] & (classes[None, :] != anchor_labels[:, None])
    return hardest, valid


def multiclass_triplet_loss(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    anchor_labels: torch.Tensor,
    pool: torch.Tensor,
    pool_labels: torch.Tensor,
    num_classes: int,
    margin: float = 0.0,
) -> torch.Tensor:
    """Mean over anchors of L(a) above. anchors and positives (N, D) row-aligned; pool (M, D)."""
    pos = (F.normalize(anchors, dim=1) * F.normalize(positives, dim=1)).sum(1)
    hardest, valid = hardest_negative_per_class(anchors, anchor_labels, pool, pool_labels, num_classes)
    terms = torch.where(valid, hardest - pos[:, None] + margin, torch.full_like(hardest, float("-inf")))
    terms = torch.cat([terms.new_zeros(len(anchors), 1), terms], dim=1)  # log(1 + sum) = lse(0, ...)
    return torch.logsumexp(terms, dim=1).mean()
