"""R-FGSM (Tramèr et al. 2018): a random step of size alpha, then a gradient step of eps - alpha."""

from __future__ import annotations

import torch

from robustlab.attacks.base import FixedBudgetAttack, RunOutput, input_gradient
from robustlab.attacks.objectives import bind_loss, get_attack_loss
from robustlab.attacks.registry import register_attack
from robustlab.core.errors import ConfigError
from robustlab.core.norms import normalize_direction, project
from robustlab.core.threat import AttackKind


@register_attack
class RFGSM(FixedBudgetAttack):
    """x' = x + alpha * sign(N(0, I)); x_adv = x' + (eps - alpha) * sign(grad at x'), in the ball.

    ``alpha`` defaults to eps / 2. For L2 the random step is a random direction of L2 size
    alpha and the gradient step is normalized in L2; the result is projected on the ball.
    """

    name = "rfgsm"
    kind = AttackKind.SINGLE_STEP

    def __init__(
        self, eps: float, norm: str = "linf", alpha: float | None = None, loss: str = "ce", **kwargs
    ) -> None:
        super().__init__(eps, norm, **kwargs)
        if alpha is not None and not 0 <= alpha <= eps:
            raise ConfigError(f"{self.name}: alpha must lie in [0, eps]")
        self.alpha = float(alpha) if alpha is not None else None
        self.loss = loss
        self._loss_fn = get_attack_loss(loss)

    def planned_passes(self) -> tuple[int, int]:
        """One forward+backward pass per sample (plus the clean and final checks)."""
        return 1, 2

    def _run(self, model, x, y, targets, criterion, generator) -> RunOutput:
        alpha = self.alpha if self.alpha is not None else self.eps / 2
        noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
        x1 = (x + alpha * normalize_direction(noise, self.norm)).clamp(0.0, 1.0)
        k = model.num_classes
        grad, _, _ = input_gradient(model, x1, bind_loss(self._loss_fn, y, targets, k))
        x_adv = x1 + (self.eps - alpha) * normalize_direction(grad, self.norm)
        x_adv = (x + project(x_adv - x, self.norm, self.eps)).clamp(0.0, 1.0)
        return RunOutput(x_adv, torch.ones(len(x), dtype=torch.int64, device=x.device))
