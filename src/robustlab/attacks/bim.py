"""BIM (Kurakin et al. 2017): PGD from the clean image with step eps / steps, no random start."""

from __future__ import annotations

from robustlab.attacks.pgd import PGD
from robustlab.attacks.registry import register_attack


@register_attack
class BIM(PGD):
    """Basic iterative method: ``steps`` steps of size ``step_size`` (default eps / steps)."""

    name = "bim"
    hidden_params = ("restarts", "random_start")

    def __init__(
        self,
        eps: float,
        norm: str = "linf",
        steps: int = 10,
        step_size: float | None = None,
        loss: str = "ce",
        check_every: int = 10,
        **kwargs,
    ) -> None:
        super().__init__(
            eps, norm, steps=steps, step_size=step_size, restarts=1, random_start=False,
            loss=loss, check_every=check_every, **kwargs,
        )

    @property
    def alpha(self) -> float:
        return self.step_size if self.step_size is not None else self.eps / self.steps
