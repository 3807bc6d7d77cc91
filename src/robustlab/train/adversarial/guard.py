"""The catastrophic-overfitting guard: each epoch, FGSM and PGD robust accuracy on one fixed
held-out batch; a collapse (PGD far below FGSM, or PGD falling sharply since the last epoch)
is a warning and a flag (``overfitting``) in the epoch's log.

Single-step training can overfit to its own attack (Wong et al. 2020): FGSM accuracy stays
high, even rises, while PGD accuracy falls to ~0 within an epoch. A collapse is either PGD
accuracy more than ``gap`` (0.15) below FGSM's *and* under half of it, or PGD accuracy more
than ``drop`` (0.2) below its best epoch so far. The ratio keeps
a merely weaker FGSM (e.g. on a k-NN head's surrogate, 56% vs 34%) from counting as collapse.
"""

from __future__ import annotations

import warnings

import torch

from robustlab.attacks import FGSM, PGD
from robustlab.core.threat import Norm


class OverfitGuard:
    """Attack `x` (N, C, H, W) in [0, 1] with labels `y` at `eps` in `norm` after each epoch."""

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, eps: float, norm: Norm, gap: float = 0.15, drop: float = 0.2
    ) -> None:
        self.x, self.y = x.detach(), y.detach()
        self.fgsm = FGSM(eps=eps, norm=norm)
        self.pgd = PGD(eps=eps, norm=norm, steps=10, restarts=1, seed=0)
        self.gap, self.drop = float(gap), float(drop)
        self.best_pgd: float | None = None

    def __call__(self, model, epoch: int) -> dict[str, float]:
        """Robust accuracies of `model` (in eval mode) and the collapse flag, for epoch `epoch` (from 1)."""
        fgsm = 1.0 - float(self.fgsm(model, self.x, self.y).success.float().mean())
        pgd = 1.0 - float(self.pgd(model, self.x, self.y).success.float().mean())
        fell = self.best_pgd is not None and self.best_pgd - pgd > self.drop
        collapsed = (fgsm - pgd > self.gap and pgd < 0.5 * fgsm) or fell
        if collapsed:
            best = f", best PGD so far {100 * self.best_pgd:.1f}%" if self.best_pgd is not None else ""
            warnings.warn(
                f"catastrophic overfitting at epoch {epoch}: PGD-10 robust accuracy {100 * pgd:.1f}% vs "
                f"FGSM {100 * fgsm:.1f}% on the guard batch{best}",
                RuntimeWarning,
                stacklevel=1,
            )
        self.best_pgd = pgd if self.best_pgd is None else max(self.best_pgd, pgd)
        return {"guard_fgsm_accuracy": fgsm, "guard_pgd_accuracy": pgd, "overfitting": float(collapsed)}
