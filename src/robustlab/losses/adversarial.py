"""Losses of the adversarial-training methods: TRADES' KL term, adversarial logit pairing,
and TLA's triplet with the adversarial example as anchor (the baselines of paper 003)."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def trades_kl(scores_clean: torch.Tensor, scores_adv: torch.Tensor) -> torch.Tensor:
    """TRADES' robust term (Zhang et al. 2019): mean over the batch of
    KL(softmax(clean) || softmax(adv)) = sum_c p_c (log p_c - log q_c), in nats (scalar)."""
    log_p = F.log_softmax(scores_clean, dim=1)
    log_q = F.log_softmax(scores_adv, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()


def logit_pairing(logits_clean: torch.Tensor, logits_adv: torch.Tensor) -> torch.Tensor:
    """Adversarial logit pairing (Kannan et al. 2018): the mean squared difference of the
    logits, averaged over samples and classes (the reference code's mean_squared_error)."""
    return (logits_clean - logits_adv).pow(2).mean()


def adversarial_triplet(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    clean: torch.Tensor,
    labels: torch.Tensor,
    margin: float,
) -> torch.Tensor:
    """TLA's triplet term (Mao et al. 2019): anchor = the adversarial example's embedding,
    positive = a clean embedding of its class, negative = the clean embedding of another
    class nearest to the anchor (hardest negative in the batch).

    Distances are Euclidean between the raw embeddings (TLA regularises their norms apart;
    on L2-normalized embeddings the 1/||f|| gradient of small ReLU features at initialisation
    killed LeNet's features on digits: loss stuck at ln 10 + margin). Returns the mean of
    max(0, d(a, p) - d(a, n) + margin) over the anchors that have a negative in the batch
    (0 when none has one)."""
    d_ap = _distance((anchors - positives).pow(2).sum(dim=1))
    sq = anchors.pow(2).sum(1, keepdim=True) - 2.0 * anchors @ clean.T + clean.pow(2).sum(1)[None, :]
    d_ac = _distance(sq)
    other = labels[:, None] != labels[None, :]
    d_an = d_ac.masked_fill(~other, float("inf")).amin(dim=1)
    has = other.any(dim=1)
    if not bool(has.any()):
        return anchors.sum() * 0.0
    return F.relu(d_ap[has] - d_an[has] + margin).mean()


def _distance(squared: torch.Tensor) -> torch.Tensor:
    """sqrt of squared distances, with a finite gradient at 0."""
    return squared.clamp_min(1e-12).sqrt()
