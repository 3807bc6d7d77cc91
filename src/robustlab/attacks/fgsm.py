"""FGSM (Goodfellow et al. 2015): one step of size eps along the gradient's steepest direction."""

from __future__ import annotations

import torch

from robustlab.attacks.base import FixedBudgetAttack, RunOutput, input_gradient
from robustlab.attacks.objectives import bind_loss, get_attack_loss
from robustlab.attacks.registry import register_attack
from robustlab.core.norms import normalize_direction
from robustlab.core.threat import AttackKind


@register_attack
class FGSM(FixedBudgetAttack):
    """x_adv = clip(x + eps * sign(grad)) for Linf, or x + eps * grad / ||grad||_2 for L2.

    Targeted mode descends the loss of the target. ``loss``: "ce" (default), "margin", "dlr".
    """

    name = "fgsm"
    kind = AttackKind.SINGLE_STEP

    def __init__(self, eps: float, norm: str = "linf", loss: str = "ce", **kwargs) -> None:
        super().__init__(eps, norm, **kwargs)
        self.loss = loss
        self._loss_fn = get_attack_loss(loss)

    @property
    def batch_independent(self) -> bool:
        return True

    def planned_passes(self) -> tuple[int, int]:
        """One forward+backward pass per sample (plus the clean and final checks)."""
        return 1, 2

    def _run(self, model, x, y, targets, criterion, generator) -> RunOutput:
        k = model.num_classes
        grad, _, _ = input_gradient(model, x, bind_loss(self._loss_fn, y, targets, k))
        x_adv = (x + self.eps * normalize_direction(grad, self.norm)).clamp(0.0, 1.0)
        return RunOutput(x_adv, torch.ones(len(x), dtype=torch.int64, device=x.device))
