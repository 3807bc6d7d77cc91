"""Planning an experiment: the exact list of work its spec asks for, before any of it runs.

- one `TrainTask` per model (sweeps and data sets already expanded by the spec);
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

from dataclasses import dataclass

from robustlab.experiment.spec import ExperimentSpec, ModelSpec

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
    trains = tuple(TrainTask(m) for m in spec.models)
    defenses: list[DefenseTask] = []
    cells: list[EvalCell] = []
    for m in spec.models:
        chain = [NONE] + [d.id for d in spec.defenses_for(m)]
        defenses += [DefenseTask(m.id, d) for d in chain[1:]]
        for defense in chain:
            for a in spec.attacks:
                if not a.applies_to(m, defense):
                    continue
                grid: tuple[float | None, ...] = (None,) if a.minimum_norm else a.eps
                cells += [EvalCell(m.id, defense, a.id, e) for e in grid]
    transfers: list[TransferCell] = []
    t = spec.transfer
    if t is not None:
        for attack in t.attacks:
            for eps in spec.transfer_eps(attack):
                for s in t.sources:
                    for g in t.targets:
                        a = spec.attack(attack)
                        source, target = spec.model(s), spec.model(g)
                        if source.data == target.data and source.seed == target.seed \
                                and a.applies_to(source) and a.applies_to(target):
                            transfers.append(TransferCell(s, g, attack, eps))
    for m in spec.models:
        for d in spec.defenses_for(m):
            if d.non_adaptive:
                transfers += [TransferCell(m.id, m.id, a.id, e, d.id) for a in spec.attacks
                              if a.applies_to(m, d.id) and not a.minimum_norm for e in a.eps if e > 0]
    return Plan(trains, tuple(defenses), tuple(cells), tuple(transfers))
