"""Per-sample binary search over a trade-off constant c (C&W, L-BFGS)."""

from __future__ import annotations

import torch

from robustlab.core.scores import best_other


def next_constant(
    c: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, success: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One search round: success lowers the upper bound, failure raises the lower one; the
    next c is the midpoint, or 10 c while no c has succeeded yet. Returns (c, lo, hi)."""
    hi = torch.where(success, torch.minimum(hi, c), hi)
    lo = torch.where(success, lo, torch.maximum(lo, c))
    c = torch.where(torch.isinf(hi), c * 10, (lo + hi) / 2)
    return c, lo, hi


def runner_up(scores: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The highest-scoring real class other than `y`, per sample."""
    return best_other(scores, y, num_classes)[1]
