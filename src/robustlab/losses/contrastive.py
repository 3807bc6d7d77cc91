"""Contrastive loss on in-batch pairs (paper 002 eq. 2.13), written here because
pytorch-metric-learning's ContrastiveLoss uses D (not D^2) on positive pairs and a different
reduction."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def contrastive_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 1.0, normalize: bool = True
) -> torch.Tensor:
    """mean_{positive pairs} D^2 + mean_{mined negative pairs} max(m - D, 0).

    Pairs are every unordered pair (i < j) of the batch; D is the Euclidean distance between
    embeddings (L2-normalized first when `normalize`, so D is in [0, 2]). Negative pairs are
    mined: only those inside the margin (D < m, a non-zero loss) are averaged, so the easy
    negatives that dominate a batch do not dilute the term. A term with no pairs is 0.
    """
    if normalize:
        embeddings = F.normalize(embeddings, dim=1)
    n = len(labels)
    i, j = torch.triu_indices(n, n, offset=1, device=embeddings.device)
    d = (embeddings[i] - embeddings[j]).pow(2).sum(1).clamp_min(1e-12).sqrt()
    same = labels[i] == labels[j]
    zero = embeddings.sum() * 0.0
    pos = d[same].pow(2).mean() if bool(same.any()) else zero
    neg_d = d[~same]
    active = neg_d < margin
    neg = (margin - neg_d[active]).mean() if bool(active.any()) else zero
    return pos + neg
