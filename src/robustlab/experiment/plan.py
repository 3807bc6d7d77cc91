"""Planning an experiment: the exact list of work its spec asks for, before any of it runs.

- one `TrainTask` per model to train (sweeps and data sets already expanded by the spec; a
  given model, such as a checkpoint to evaluate, is not trained);
- one `DefenseTask` per (model, defense) of the `defenses:` axis (built once, cached);
- one `EvalCell` per (model, defense, attack, eps), each attack over its own eps grid
  (minimum-norm attacks once, ``eps=None``); the undefended model is always planned;
- one `TrainTask` per seed of a model with several `seeds:` (each its own model id);
- one `TransferCell` per (source, target, attack, eps) of the transfer matrix (with several
  seeds, between the models of one seed only); a diagonal
  cell (source == target) *is* the white-box `EvalCell` of that attack and eps (`white_box`),
  never a second computation;
- for a defense marked ``non_adaptive``, one `TransferCell` per (model, attack, eps) from the
  undefended model to the defended one (``target_defense``): paper 002's setting, examples
  crafted without knowledge of the defense, beside the adaptive white-box cells.

The plan depends on the spec only, so it can be printed, counted and tested without data.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from robustlab.experiment.spec_parts import ModelSpec

if TYPE_CHECKING:
    from robustlab.experiment.spec import ExperimentSpec

NONE = "none"


@dataclass(frozen=True)
class TrainTask:
    model: ModelSpec


@dataclass(frozen=True)
class DefenseTask:
    model: str
    defense: str


@dataclass(frozen=True)
class EvalCell:
    """Attack `attack` (an attack id of the spec) at `eps` on `model` behind `defense`."""

    model: str
    defense: str
    attack: str
    eps: float | None


@dataclass(frozen=True)
class TransferCell:
    """Adversarials of `attack` at `eps` crafted on `source` (undefended), judged on `target`
    behind `target_defense` (a defense id, or "none")."""

    source: str
    target: str
    attack: str
    eps: float
    target_defense: str = NONE

    @property
    def white_box(self) -> EvalCell | None:
        """The white-box cell this one is (the diagonal), else None."""
        if self.source == self.target and self.target_defense == NONE:
            return EvalCell(self.target, NONE, self.attack, self.eps)
        return None


@dataclass(frozen=True)
class Plan:
    trains: tuple[TrainTask, ...]
    defenses: tuple[DefenseTask, ...]
    cells: tuple[EvalCell, ...]
    transfers: tuple[TransferCell, ...]

    def cells_of(self, model: str, defense: str = NONE) -> list[EvalCell]:
        return [c for c in self.cells if c.model == model and c.defense == defense]

    def transfers_from(self, source: str) -> list[TransferCell]:
        """Off-diagonal transfer cells whose adversarials come from `source`."""
        return [t for t in self.transfers if t.source == source and t.white_box is None]

    def counts(self) -> dict[str, int]:
        return {"models": len(self.trains), "defenses": len(self.defenses), "cells": len(self.cells),
                "transfer": sum(t.white_box is None for t in self.transfers)}


def plan_experiment(spec: ExperimentSpec) -> Plan:
    """Every task and cell `spec` asks for, in the order the runner does them."""
    trains = tuple(TrainTask(m) for m in spec.models if m.given is None)  # a given model is not trained
    defenses = tuple(DefenseTask(m.id, d.id) for m in spec.models for d in spec.defenses_for(m))
    cells = tuple(EvalCell(m, d, a, e) for m, d, a, grid in _cell_groups(spec) for e in grid)
    transfers = [TransferCell(s, g, a, e) for a, grid, pairs in _transfer_groups(spec) for e in grid
                 for s, g in pairs]
    for m in spec.models:
        for d in spec.defenses_for(m):
            if d.non_adaptive:
                transfers += [TransferCell(m.id, m.id, a, e, d.id) for a, grid in _non_adaptive(spec, m, d.id)
                              for e in grid]
    return Plan(trains, defenses, cells, tuple(transfers))


def plan_size(spec: ExperimentSpec) -> dict[str, int]:
    """`plan_experiment(spec).counts()` (and the defended models to build) without building
    the plan: work proportional to models x defenses x attacks, whatever the eps grids."""
    cells = sum(len(grid) for *_, grid in _cell_groups(spec))
    transfer = sum(len(grid) * sum(s != g for s, g in pairs) for _, grid, pairs in _transfer_groups(spec))
    transfer += sum(len(grid) for m in spec.models for d in spec.defenses_for(m) if d.non_adaptive
                    for _, grid in _non_adaptive(spec, m, d.id))
    return {"models": sum(m.given is None for m in spec.models),
            "defenses": sum(len(spec.defenses_for(m)) for m in spec.models), "cells": cells, "transfer": transfer}


def _cell_groups(spec: ExperimentSpec) -> Iterator[tuple[str, str, str, tuple[float | None, ...]]]:
    """(model, defense, attack, eps grid) of every white-box cell group; the undefended model first."""
    for m in spec.models:
        for defense in [NONE] + [d.id for d in spec.defenses_for(m)]:
            for a in spec.attacks:
                if a.applies_to(m, defense):
                    yield m.id, defense, a.id, (None,) if a.minimum_norm else a.eps


def _transfer_groups(spec: ExperimentSpec) -> Iterator[tuple[str, tuple[float, ...], list[tuple[str, str]]]]:
    """(attack, eps grid, (source, target) pairs) of the transfer matrix, diagonal included."""
    t = spec.transfer
    if t is None:
        return
    for attack in t.attacks:
        a = spec.attack(attack)
        pairs = [(s, g) for s in t.sources for g in t.targets
                 if (source := spec.model(s)).data == (target := spec.model(g)).data
                 and source.seed == target.seed and a.applies_to(source) and a.applies_to(target)]
        yield attack, spec.transfer_eps(attack), pairs


def _non_adaptive(spec: ExperimentSpec, m: ModelSpec, defense: str) -> Iterator[tuple[str, tuple[float, ...]]]:
    """(attack, positive eps) of the non-adaptive cells of `m` behind `defense`."""
    for a in spec.attacks:
        if a.applies_to(m, defense) and not a.minimum_norm:
            yield a.id, tuple(e for e in a.eps if e > 0)
