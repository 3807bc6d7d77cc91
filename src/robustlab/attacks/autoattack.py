"""AutoAttack (Croce & Hein 2020): an ensemble of attacks, each run only on the points the
previous members left standing; worst case per sample.

``version`` picks the members, with the settings of the reference implementation
(fra31/auto-attack):

- ``robustlab`` (default): robustlab's faster ensemble, APGD-CE, APGD-T and Square; it is
  *not* AutoAttack's standard protocol (no FAB-T; Square's p_init 0.3 for L2);
- ``standard``: APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square (5,000 queries,
  p_init 0.8), one restart each: the protocol of the RobustBench leaderboard;
- ``plus``: APGD-CE and APGD-DLR (5 restarts each), FAB (5 restarts), Square, APGD-T, FAB-T;
- ``rand``: APGD-CE and APGD-DLR through EOT over 20 draws (``eot`` 20 unless given), for
  randomized defenses.

Linf and L2 (the reference's L1 protocol runs APGD's L1 variants, which robustlab's APGD does
not have). A sample fooled by a member keeps that member's x_adv; one that no member fools
keeps a rejected x_adv if some member got the model to refuse it (counted as detected), else
the last member's output. FAB's points count only within eps, as in the reference.
"""

from __future__ import annotations

import re

import torch

from robustlab.attacks.apgd import APGD, APGDT
from robustlab.attacks.base import Attack, FixedBudgetAttack, RunOutput, settled
from robustlab.attacks.eot import EOT
from robustlab.attacks.fab import FAB, FABT
from robustlab.attacks.registry import register_attack
from robustlab.attacks.square import Square
from robustlab.core.contract import REJECT
from robustlab.core.errors import ConfigError
from robustlab.core.threat import AttackKind

VERSIONS: dict[str, str] = {
    "robustlab": "robustlab ensemble (APGD-CE, APGD-T, Square), not AutoAttack standard",
    "standard": "AutoAttack standard (APGD-CE, APGD-T, FAB-T, Square)",
    "plus": "AutoAttack plus (APGD-CE, APGD-DLR, FAB, Square, APGD-T, FAB-T; 5 restarts)",
    "rand": "AutoAttack rand (APGD-CE, APGD-DLR; EOT over 20 draws)",
}
"""Each version's members, as a report names them."""

def protocol_of(label: str) -> str | None:
    """The protocol an attack label names ("autoattack(version=standard)" -> VERSIONS["standard"];
    "autoattack" -> the default's), None for any other attack: what reports print beside a number."""
    if label.split("(")[0] != "autoattack":
        return None
    found = re.search(r"version=(\w+)", label)
    return VERSIONS.get(found.group(1) if found else "robustlab")


RAND_EOT = 20
"""The rand version's draws per gradient (the reference's eot_iter)."""


@register_attack
class AutoAttack(FixedBudgetAttack):
    """The members of ``version`` (see the module docstring) in order, on what the previous
    members left standing: ``steps`` per APGD / FAB run, ``n_targets`` runner-up classes for
    APGD-T and FAB-T, ``queries`` for Square.

    ``extras["member"]`` names, per sample, the index of the member that fooled it (-1: none);
    ``extras["member_queries"]`` (N, members) the queries each member spent on it.
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
        version: str = "robustlab",
        **kwargs,
    ) -> None:
        if version not in VERSIONS:
            raise ConfigError(f"{self.name}: version must be one of {', '.join(VERSIONS)}, got {version!r}")
        if version == "rand":
            kwargs.setdefault("eot", RAND_EOT)
        super().__init__(eps, norm, **kwargs)
        self.version = version
        if steps < 1 or n_targets < 1 or queries < 1:
            raise ConfigError(f"{self.name}: steps, n_targets and queries must be >= 1")
        self.steps = int(steps)
        self.n_targets = int(n_targets)
        self.queries = int(queries)

    def planned_passes(self) -> tuple[int, int] | None:
        """At most (forward+backward, forward-only) passes per sample, over the members; None
        when a member cannot say (untargeted FAB)."""
        passes = [m.planned_passes() for m in self.members()]
        if any(p is None for p in passes):
            return None
        fb, f = zip(*passes, strict=True)  # type: ignore[misc]
        return sum(fb), sum(f)

    @property
    def protocol(self) -> str:
        """The version's name and members, as reports state it."""
        return VERSIONS[self.version]

    def members(self) -> list[Attack]:
        common = {"eps": self.eps, "norm": self.norm.value, "seed": self.seed, "criterion": self.criterion_spec}
        steps, targets = self.steps, self.n_targets
        apgd_ce = APGD(steps=steps, loss="ce", **common)
        apgd_t = APGDT(steps=steps, n_targets=targets, **common)
        if self.version == "robustlab":
            p_init = 0.8 if self.norm == "linf" else 0.3
            return [apgd_ce, apgd_t, Square(queries=self.queries, p_init=p_init, **common)]
        if self.version == "rand":
            return [apgd_ce, APGD(steps=steps, loss="dlr", **common)]
        square = Square(queries=self.queries, p_init=0.8, **common)
        fab_t = FABT(steps=steps, n_targets=targets, **common)
        if self.version == "standard":
            return [apgd_ce, apgd_t, fab_t, square]
        return [  # plus
            APGD(steps=steps, loss="ce", restarts=5, **common),
            APGD(steps=steps, loss="dlr", restarts=5, **common),
            FAB(steps=steps, restarts=5, **common),
            square,
            apgd_t,
            fab_t,
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
            # later members skip what this one settled (on a randomized model: fooled by the mean
            # of the draws, not merely by one draw)
            fooled[idx] |= settled(model, r.x_adv, y[idx], t, criterion.select(idx, n)) if isinstance(model, EOT) \
                else r.success
            member[idx] = torch.where(r.success, torch.full_like(member[idx], i), member[idx])
        return RunOutput(x_adv, queries, {"member": member, "member_queries": per_member})
