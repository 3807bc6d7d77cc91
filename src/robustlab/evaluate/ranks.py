"""Rank of the true label and the K-anonymity check of Mygdalis et al. 2020 (eq. 5-6).

The rank of label y for scores z (C real classes) is 1 + the number of classes scored
strictly higher than y (1 = top-1). The rank pmf is p(j) = P(rank of y = j), j = 1..C,
over a set of (adversarial) images; eq. 6 asks max_j p(j) <= 1/K. The paper accepts
values that "lie really close" to 1/K without a number; robustlab reports the strict check
and a check with an absolute ``tolerance`` (default 0.02), and says which one it states.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from robustlab.core.errors import ConfigError, InputError
from robustlab.core.scores import label_rank

DEFAULT_TOLERANCE = 0.02


def label_ranks(scores: torch.Tensor, y: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """1-based rank of y among the first `num_classes` score columns, int64 (N,)."""
    if y.shape != (scores.shape[0],):
        raise InputError(f"labels must be ({scores.shape[0]},), got {tuple(y.shape)}")
    return label_rank(scores, y, num_classes)


def rank_pmf(ranks: torch.Tensor, num_classes: int) -> torch.Tensor:
    """p(j) = P(rank = j) for j = 1..num_classes, float64 (num_classes,); zeros for no samples."""
    counts = torch.bincount(ranks.long().cpu() - 1, minlength=num_classes)[:num_classes].double()
    return counts / counts.sum() if counts.sum() > 0 else counts


@dataclass
class KAnonymityCheck:
    """Eq. 6 for one adversarial set: pmf, its maximum, 1/K, and the verdicts."""

    K: int
    pmf: list[float]
    max_p: float
    bound: float
    tolerance: float
    passed_strict: bool
    passed: bool
    top1_rate: float

    def summary(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"K={self.K}: max_j P(rank=j) = {self.max_p:.3f} vs 1/K = {self.bound:.3f} "
            f"(tolerance {self.tolerance:.3f}) -> {verdict}"
            f"{'' if self.passed_strict else ' (strictly above 1/K)'}; P(rank=1) = {self.top1_rate:.3f}"
        )


def kanonymity_check(
    ranks: torch.Tensor, num_classes: int, K: int, tolerance: float = DEFAULT_TOLERANCE
) -> KAnonymityCheck:
    """Check max_j P(rank of y = j) <= 1/K (+ tolerance) for the ranks of a set of images."""
    if K < 1 or tolerance < 0:
        raise ConfigError(f"K must be >= 1 and tolerance >= 0, got K={K}, tolerance={tolerance}")
    pmf = rank_pmf(ranks, num_classes)
    max_p = float(pmf.max()) if len(pmf) else 0.0
    bound = 1.0 / K
    return KAnonymityCheck(
        K,
        pmf.tolist(),
        max_p,
        bound,
        tolerance,
        max_p <= bound + 1e-12,
        max_p <= bound + tolerance,
        float(pmf[0]) if len(pmf) else 0.0,
    )
