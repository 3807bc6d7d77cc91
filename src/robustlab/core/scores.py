"""Two questions every attack and metric asks of a score matrix (N, C): which class other than
the label scores highest, and where the label ranks. Answered here once."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from robustlab.core.contract import RobustModel


def _real(scores: torch.Tensor, num_classes: int | None) -> torch.Tensor:
    return scores[:, : num_classes or scores.shape[1]]


def others_masked(scores: torch.Tensor, label: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """The first `num_classes` score columns (all when None) with the label's column set to -inf."""
    z = _real(scores, num_classes)
    return z.scatter(1, label.long().view(-1, 1), float("-inf"))


def best_other(
    scores: torch.Tensor, label: torch.Tensor, num_classes: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(score, index) of the highest-scoring class other than `label`, per sample, among the first
    `num_classes` columns (a model's reject column is left out when `num_classes` is given)."""
    values, index = others_masked(scores, label, num_classes).max(dim=1)
    return values, index


def others_by_score(scores: torch.Tensor, label: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """Indices of the classes other than `label`, highest score first, (N, C - 1)."""
    z = others_masked(scores, label, num_classes)
    return z.argsort(dim=1, descending=True)[:, : z.shape[1] - 1]


def runner_up_targets(model: RobustModel, x: torch.Tensor, y: torch.Tensor, n_targets: int) -> list[torch.Tensor]:
    """The `n_targets` highest-scoring classes other than `y` under `model(x)` (at most C - 1),
    one (N,) int64 tensor per rank, highest first: the targets of APGD-T and FAB-T."""
    k = model.num_classes
    with torch.no_grad():
        ranked = others_by_score(model(x)[:, :k], y)
    return [ranked[:, i] for i in range(min(n_targets, k - 1))]


def label_rank(
    scores: torch.Tensor, label: torch.Tensor, num_classes: int | None = None, margin: float = 0.0
) -> torch.Tensor:
    """1-based rank of `label` among the first `num_classes` columns (all when None): 1 + the
    number of columns scored more than `margin` above it (ties do not push it down), int64 (N,)."""
    z = _real(scores, num_classes)
    z_label = z.gather(1, label.long().view(-1, 1))
    return (z > z_label + margin).sum(dim=1) + 1
