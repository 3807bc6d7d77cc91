"""The AutoAttack-style standard evaluation (Croce & Hein 2020): APGD-CE, targeted APGD-DLR
and Square, each run only on the points still standing; worst case per sample.

A sample fooled by a member keeps that member's x_adv; one that no member fools keeps a
rejected x_adv if some member got the model to refuse it (counted as detected), else the
last member's output.
"""

from __future__ import annotations

import torch

from robustlab.attacks.apgd import APGD, APGDT
from robustlab.attacks.base import Attack, FixedBudgetAttack, RunOutput
from robustlab.attacks.square import Square
from robustlab.core.contract import REJECT
from robustlab.core.errors import ConfigError
from robustlab.core.threat import AttackKind


class AutoAttack(FixedBudgetAttack):
    """APGD-CE (``steps``), APGD-T (``steps`` per target, ``n_targets`` runner-up classes) and
    Square (``queries``), in this order, on what the previous members left standing.

    ``extras["member"]`` names, per sample, the index of the member that fooled it (-1: none);
    ``extras["member_queries"]`` (N, 3) the queries each member spent on it.
    """

    name = "autoattack"
    kind = AttackKind.ENSEMBLE
    full_strength = {"steps": 100, "n_targets": 9, "queries": 5000}
    """The standard evaluation's settings; a run below any of them is reported as "reduced"."""

    def __init__(
        self,
        eps: float,
        norm: str = "linf",
        steps: int = 100,
        n_targets: int = 9,
        queries: int = 5000,
        **kwargs,
    ) -> None:
        super().__init__(eps, norm, **kwargs)
        if steps < 1 or n_targets < 1 or queries < 1:
            raise ConfigError(f"{self.name}: steps, n_targets and queries must be >= 1")
        self.steps = int(steps)
        self.n_targets = int(n_targets)
        self.queries = int(queries)

    def planned_passes(self) -> tuple[int, int]:
        """At most (forward+backward, forward-only) passes per sample, over the members."""
        fb, f = zip(*(m.planned_passes() for m in self.members()), strict=True)
        return sum(fb), sum(f)

    def members(self) -> list[Attack]:
        common = {"eps": self.eps, "norm": self.norm, "seed": self.seed, "criterion": self.criterion_spec}
        p_init = 0.8 if self.norm == "linf" else 0.3
        return [
            APGD(steps=self.steps, loss="ce", **common),
            APGDT(steps=self.steps, n_targets=self.n_targets, **common),
            Square(queries=self.queries, p_init=p_init, **common),
        ]

    def _run(self, model, x, y, targets, criterion, generator) -> RunOutput:
        n, dev = len(x), x.device
        x_adv = x.clone()
        fooled = torch.zeros(n, dtype=torch.bool, device=dev)
        rejected = torch.zeros(n, dtype=torch.bool, device=dev)
        member = torch.full((n,), -1, dtype=torch.int64, device=dev)
        queries = torch.zeros(n, dtype=torch.int64, device=dev)
        members = self.members()
        per_member = torch.zeros(n, len(members), dtype=torch.int64, device=dev)
        for i, attack in enumerate(members):
            idx = (~fooled).nonzero().squeeze(1)
            if len(idx) == 0:
                break
            t = targets[idx] if targets is not None else None
            r = attack(model, x[idx], y[idx], targets=t)
            queries[idx] += r.queries
            per_member[idx, i] = r.queries
            refused = (r.prediction == REJECT) & ~r.success
            take = r.success | ~rejected[idx]
            x_adv[idx] = torch.where(take.view(-1, 1, 1, 1), r.x_adv, x_adv[idx])
            rejected[idx] |= refused
            fooled[idx] |= r.success
            member[idx] = torch.where(r.success, torch.full_like(member[idx], i), member[idx])
        return RunOutput(x_adv, queries, {"member": member, "member_queries": per_member})
