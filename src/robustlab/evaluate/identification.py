"""Identification metrics (paper 002, eq. 3.1-3.3): verification pairs, FMR, FNMR, accuracy,
and confidence on clean and adversarial inputs.

Verification: every same-class pair (i < j) of a split plus as many different-class pairs
drawn at random (seeded). A pair "matches" when the cosine similarity of the two embeddings
(`model.embed`) is at least a threshold, chosen at the equal error rate (FMR = FNMR) on a
validation split and then applied unchanged to the test split:

    FMR = FP / (FP + TN)    FNMR = FN / (FN + TP)    pair accuracy = (TP + TN) / all pairs

Confidence is the mean over samples of the largest softmax probability of the model's scores
(for metric heads: of their surrogate scores).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.metrics import roc_curve
from torch.nn import functional as F

from robustlab.core.contract import RobustModel, batched_predict
from robustlab.core.errors import InputError


def verification_pairs(
    labels: torch.Tensor, seed: int = 0, max_positive: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(i, j, same): every same-class pair i < j (a seeded random subset of ``max_positive`` when
    given) plus as many random different-class pairs; same is bool per pair."""
    labels = labels.cpu().long()
    n = len(labels)
    g = torch.Generator().manual_seed(seed)
    order = torch.argsort(labels, stable=True)
    sorted_lab = labels[order]
    counts = torch.bincount(sorted_lab)
    starts = torch.cumsum(counts, 0) - counts
    pi, pj = [], []
    for c in (counts >= 2).nonzero().squeeze(1).tolist():  # one iteration per class, not per sample
        a, b = torch.triu_indices(int(counts[c]), int(counts[c]), offset=1)
        pi.append(order[starts[c] + a])
        pj.append(order[starts[c] + b])
    pos_i = torch.cat(pi) if pi else torch.empty(0, dtype=torch.int64)
    pos_j = torch.cat(pj) if pj else torch.empty(0, dtype=torch.int64)
    if max_positive is not None and len(pos_i) > max_positive:
        keep = torch.randperm(len(pos_i), generator=g)[:max_positive]
        pos_i, pos_j = pos_i[keep], pos_j[keep]
    want = len(pos_i)
    if want == 0 or len(counts.nonzero()) < 2:
        raise InputError("verification pairs need at least two classes and one class with two samples")
    neg_i, neg_j = [], []
    have = 0
    while have < want:
        i = torch.randint(n, (2 * (want - have) + 16,), generator=g)
        j = torch.randint(n, (len(i),), generator=g)
        ok = labels[i] != labels[j]
        neg_i.append(i[ok])
        neg_j.append(j[ok])
        have += int(ok.sum())
    neg_i, neg_j = torch.cat(neg_i)[:want], torch.cat(neg_j)[:want]
    same = torch.cat([torch.ones(want, dtype=torch.bool), torch.zeros(want, dtype=torch.bool)])
    return torch.cat([pos_i, neg_i]), torch.cat([pos_j, neg_j]), same


def pair_similarity(
    embeddings: torch.Tensor, i: torch.Tensor, j: torch.Tensor, chunk: int = 1 << 20
) -> torch.Tensor:
    """Cosine similarity in [-1, 1] of each pair (i[k], j[k]) of rows of `embeddings`."""
    e = F.normalize(embeddings.float().cpu(), dim=1)
    return torch.cat([(e[i[s : s + chunk]] * e[j[s : s + chunk]]).sum(1) for s in range(0, len(i), chunk)])


def eer_threshold(similarity: torch.Tensor, same: torch.Tensor) -> tuple[float, float]:
    """(threshold, equal error rate): the ROC point where FMR and FNMR are closest."""
    fpr, tpr, thr = roc_curve(same.numpy(), similarity.numpy())
    fnr = 1.0 - tpr
    k = int(np.argmin(np.abs(fnr - fpr)))
    return float(min(thr[k], 1.0 + 1e-6)), float((fpr[k] + fnr[k]) / 2)


def verification_rates(similarity: torch.Tensor, same: torch.Tensor, threshold: float) -> dict[str, float]:
    """FMR, FNMR and pair accuracy (eq. 3.1-3.3) when pairs with similarity >= threshold match."""
    match = similarity >= threshold
    tp = int((match & same).sum())
    fp = int((match & ~same).sum())
    tn = int((~match & ~same).sum())
    fn = int((~match & same).sum())
    return {
        "fmr": fp / max(fp + tn, 1),
        "fnmr": fn / max(fn + tp, 1),
        "pair_accuracy": (tp + tn) / max(tp + tn + fp + fn, 1),
    }


@torch.no_grad()
def _embed(model: RobustModel, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    device = next(model.parameters()).device
    parts = [model.embed(x[s : s + batch_size].to(device)).cpu() for s in range(0, len(x), batch_size)]
    return torch.cat(parts)


@torch.no_grad()
def mean_confidence(model: RobustModel, x: torch.Tensor, batch_size: int = 512) -> float:
    """Mean over samples of the largest softmax probability of the model's scores, in [1/C, 1]."""
    device = next(model.parameters()).device
    probs = [
        torch.softmax(model(x[s : s + batch_size].to(device))[:, : model.num_classes].float(), 1)
        .amax(1)
        .cpu()
        for s in range(0, len(x), batch_size)
    ]
    return float(torch.cat(probs).mean())


@dataclass
class IdentificationMetrics:
    """Test-split numbers; rates are fractions in [0, 1]."""

    accuracy: float
    fmr: float
    fnmr: float
    pair_accuracy: float
    threshold: float
    val_eer: float
    n_pairs: int
    confidence_clean: float
    confidence_adv: float | None = None

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def split_validation(
    x: torch.Tensor, y: torch.Tensor, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A seeded, class-stratified half split of (x, y): (x_val, y_val, x_test, y_test)."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    order = perm[torch.argsort(y[perm], stable=True)]
    lab = y[order]
    starts = torch.searchsorted(lab, lab)
    rank = torch.arange(len(lab)) - starts
    val = order[rank % 2 == 0]
    test = order[rank % 2 == 1]
    return x[val], y[val], x[test], y[test]


def identification_metrics(
    model: RobustModel,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    x_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
    x_adv: torch.Tensor | None = None,
    seed: int = 0,
    max_positive: int | None = None,
) -> IdentificationMetrics:
    """Accuracy (of `predict`), FMR / FNMR / pair accuracy on test pairs at the EER threshold of
    validation pairs, and confidence on `x` and on `x_adv` (adversarial versions of `x`, optional).

    Without a validation split, (x, y) is split in two class-stratified halves (seeded): the first
    sets the threshold, the second is measured (accuracy and confidence use all of `x`).
    """
    y = y.cpu().long()
    if x_val is None or y_val is None:
        x_val, y_val, x_pairs, y_pairs = split_validation(x.cpu(), y, seed)
    else:
        x_pairs, y_pairs = x, y
    vi, vj, vsame = verification_pairs(y_val.cpu(), seed, max_positive)
    threshold, eer = eer_threshold(pair_similarity(_embed(model, x_val), vi, vj), vsame)
    ti, tj, tsame = verification_pairs(y_pairs, seed + 1, max_positive)
    rates = verification_rates(pair_similarity(_embed(model, x_pairs), ti, tj), tsame, threshold)
    accuracy = float((batched_predict(model, x) == y).float().mean())
    return IdentificationMetrics(
        accuracy=accuracy,
        threshold=threshold,
        val_eer=eer,
        n_pairs=len(ti),
        confidence_clean=mean_confidence(model, x),
        confidence_adv=mean_confidence(model, x_adv) if x_adv is not None else None,
        **rates,
    )
