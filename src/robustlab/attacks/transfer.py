"""Transfer attack: craft adversarials on a source model, judge them on the attacked model.

Gradient masking in the target does not help it here: the gradients come from the source.
"""

from __future__ import annotations

from typing import Any

import torch

from robustlab.attacks.base import Attack, FixedBudgetAttack, RunOutput
from robustlab.core.contract import RobustModel
from robustlab.core.errors import ConfigError


class Transfer(FixedBudgetAttack):
    """Run ``attack`` (a registered name, with ``attack_params``) at ``eps`` on ``source``;
    the result is judged on the model passed to the call (same labels, same classes)."""

    name = "transfer"

    def __init__(
        self,
        eps: float,
        source: RobustModel,
        norm: str = "linf",
        attack: str = "pgd",
        attack_params: dict[str, Any] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(eps, norm, **kwargs)
        if not isinstance(source, torch.nn.Module) or not hasattr(source, "predict"):
            raise ConfigError(f"{self.name}: source must be a robustlab model (load the checkpoint first)")
        self.source = source
        self.attack = attack
        self.attack_params = dict(attack_params or {})
        self._inner = self._make_inner()

    def _make_inner(self) -> Attack:
        from robustlab.attacks.registry import get_attack_class, make_attack

        params = {"norm": self.norm, "seed": self.seed, **self.attack_params}
        if not get_attack_class(self.attack).minimum_norm:
            params["eps"] = self.eps
        return make_attack(self.attack, **params)

    def spec(self) -> dict[str, Any]:
        spec = super().spec()
        spec["attack_params"] = dict(self.attack_params)
        config = getattr(self.source, "config", None)
        spec["source"] = config.digest() if hasattr(config, "digest") else type(self.source).__name__
        return spec

    def _run(self, model, x, y, targets, criterion, generator) -> RunOutput:
        if self.source.num_classes != model.num_classes:
            raise ConfigError(
                f"{self.name}: source has {self.source.num_classes} classes, target {model.num_classes}"
            )
        param = next(self.source.parameters(), None)
        if param is not None and param.device != x.device:
            self.source.to(x.device)  # the source is the attack's own model, not the one attacked
        r = self._inner(self.source, x, y, targets=targets)
        return RunOutput(r.x_adv, r.queries, {"source_success": r.success})
