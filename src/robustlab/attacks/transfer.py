"""Transfer attack: craft adversarials on a source model, judge them on the attacked model.

Gradient masking in the target does not help it here: the gradients come from the source.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from robustlab.attacks.base import Attack, FixedBudgetAttack, RunOutput
from robustlab.attacks.registry import get_attack_class, make_attack, register_attack
from robustlab.core.contract import RobustModel
from robustlab.core.digest import model_digest
from robustlab.core.errors import ConfigError
from robustlab.core.threat import AttackKind


@register_attack
class Transfer(FixedBudgetAttack):
    """Run ``attack`` (a registered name, with ``attack_params``) at ``eps`` on ``source``;
    the result is judged on the model passed to the call (same labels, same classes)."""

    name = "transfer"
    kind = AttackKind.TRANSFER

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
        self._source_digest = model_digest(source)
        self._copies: dict[torch.device, RobustModel] = {}

    def _make_inner(self) -> Attack:
        params = {"norm": self.norm, "seed": self.seed, **self.attack_params}
        if not get_attack_class(self.attack).minimum_norm:
            params["eps"] = self.eps
        return make_attack(self.attack, **params)

    def spec(self) -> dict[str, Any]:
        spec = super().spec()
        spec["attack_params"] = dict(self.attack_params)
        spec["source"] = self._source_digest  # the source's weights, not only its architecture
        spec["attack_spec"] = self._inner.spec()
        return spec

    def _source_on(self, device: torch.device) -> RobustModel:
        """The source on `device`: the caller's model itself, or a private copy (never moved)."""
        param = next(self.source.parameters(), None)
        if param is None or param.device == device:
            return self.source
        if device not in self._copies:
            self._copies[device] = copy.deepcopy(self.source).to(device).eval()
        return self._copies[device]

    def _run(self, model, x, y, targets, criterion, generator) -> RunOutput:
        if self.source.num_classes != model.num_classes:
            raise ConfigError(
                f"{self.name}: source has {self.source.num_classes} classes, target {model.num_classes}"
            )
        r = self._inner(self._source_on(x.device), x, y, targets=targets)
        return RunOutput(r.x_adv, r.queries, {"source_success": r.success})
