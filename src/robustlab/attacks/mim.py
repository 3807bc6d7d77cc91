"""MIM (Dong et al. 2018): iterative steps along a momentum of L1-normalized gradients."""

from __future__ import annotations

from robustlab.attacks.bim import BIM
from robustlab.attacks.registry import register_attack
from robustlab.core.errors import ConfigError
from robustlab.core.norms import normalize_direction


@register_attack
class MIM(BIM):
    """Momentum iterative method: g <- mu * g + grad / ||grad||_1; step ``step_size`` along g.

    The step is sign(g) for Linf, g / ||g||_2 for L2; ``step_size`` defaults to eps / steps,
    and the attack starts from the clean image.
    """

    name = "mim"

    def __init__(
        self,
        eps: float,
        norm: str = "linf",
        steps: int = 10,
        decay: float = 1.0,
        step_size: float | None = None,
        loss: str = "ce",
        check_every: int = 10,
        **kwargs,
    ) -> None:
        super().__init__(eps, norm, steps=steps, step_size=step_size, loss=loss, check_every=check_every, **kwargs)
        if decay < 0:
            raise ConfigError(f"{self.name}: decay must be >= 0")
        self.decay = float(decay)

    def _direction(self, grad, state):
        g = normalize_direction(grad, "l1")
        state = g if state is None else self.decay * state + g
        return normalize_direction(state, self.norm), state
