"""Run attacks over an eps grid against a model, batch by batch, into the results store."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from robustlab.attacks.base import Attack
from robustlab.attacks.eot import DEFAULT_EOT, is_randomized
from robustlab.attacks.progress import reporting
from robustlab.attacks.registry import get_attack_class, make_attack
from robustlab.core.contract import RobustModel, batched_predict
from robustlab.core.errors import ConfigError
from robustlab.core.results import AttackResult
from robustlab.core.validation import check_images, check_labels
from robustlab.evaluate.metrics import cell_metrics, per_sample_outcomes
from robustlab.evaluate.plan import GridPlan, pass_seconds, plan_grid
from robustlab.store.results import ResultKey, ResultStore, canonical


@dataclass(frozen=True)
class AttackSpec:
    """An attack by name with its parameters, without eps (eps comes from the grid)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        get_attack_class(self.name)  # unknown names fail here, before any work
        if "eps" in self.params:
            raise ConfigError(f"{self.name}: give eps through the eps grid, not the attack parameters")

    def build(self, eps: float) -> Attack:
        cls = get_attack_class(self.name)
        params = dict(self.params)
        if not cls.minimum_norm:
            params["eps"] = eps
        if isinstance(params.get("source"), str):  # transfer: the source model is a checkpoint path
            from robustlab.store.checkpoints import load_checkpoint

            params["source"] = load_checkpoint(params["source"]).eval()
        return make_attack(self.name, **params)

    def key(self) -> str:
        return canonical({"name": self.name, **self.params})

    @property
    def label(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.name}({shown})" if shown else self.name


def run_attack(
    attack: Attack, model: RobustModel, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256
) -> AttackResult:
    """`attack` over (x, y) in batches on the model's device; results gathered on the CPU."""
    device = next(model.parameters()).device
    parts: list[AttackResult] = []
    for i in range(0, len(x), batch_size):
        r = attack(model, x[i : i + batch_size].to(device), y[i : i + batch_size].to(device))
        parts.append(r)
    return AttackResult(
        x_adv=torch.cat([p.x_adv.cpu() for p in parts]),
        success=torch.cat([p.success.cpu() for p in parts]),
        distance=torch.cat([p.distance.cpu() for p in parts]),
        queries=torch.cat([p.queries.cpu() for p in parts]),
        prediction=torch.cat([p.prediction.cpu() for p in parts]),
    )


def evaluate_cell(
    model: RobustModel,
    x: torch.Tensor,
    y: torch.Tensor,
    spec: AttackSpec,
    eps: float,
    batch_size: int = 256,
    clean_pred: torch.Tensor | None = None,
    attack_progress: Callable[[str, int, int, int], None] | None = None,
) -> tuple[dict[str, Any], dict[str, list]]:
    """One (attack, eps) cell against `model` (in eval mode): its metrics and per-sample record.

    Needs no store: the experiment executors run it on workers and the driver writes the row.
    `metrics["seconds"]` is the attack's wall time (the only field that varies between runs).
    `attack_progress(member, done, total, standing)` hears the attack's progress inside the cell.
    """
    if clean_pred is None:
        clean_pred = batched_predict(model, x, batch_size)
    start = time.perf_counter()
    with reporting(attack_progress):
        result = run_attack(spec.build(eps), model, x, y, batch_size)
    per_sample = per_sample_outcomes(x, y, clean_pred, result)
    metrics = cell_metrics(per_sample)
    metrics["seconds"] = time.perf_counter() - start
    return metrics, per_sample


ProgressFn = Callable[[str, int, int], None]


def eot_specs(model: RobustModel, x: torch.Tensor, attacks: Sequence[AttackSpec]) -> list[AttackSpec]:
    """`attacks`, each given ``eot=DEFAULT_EOT`` when `model` is randomized (declared, or two
    forward passes on a few of `x` differ) and the spec sets no ``eot`` itself; call it before
    the result keys are made, so the keys carry the parameter."""
    if not len(x) or not is_randomized(model, x[:8].to(next(model.parameters()).device)):
        return list(attacks)
    return [s if "eot" in s.params else AttackSpec(s.name, {**s.params, "eot": DEFAULT_EOT}) for s in attacks]


def evaluate_grid(
    model: RobustModel,
    model_id: str,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: Sequence[AttackSpec],
    eps_grid: Sequence[float],
    store: ResultStore,
    *,
    defense: str = "none",
    subset: str = "test",
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    on_plan: Callable[[GridPlan], None] | None = None,
) -> list[ResultKey]:
    """Run every (attack, eps) cell not yet in `store`; return the keys of all cells.

    Each cell is stored in its own transaction the moment it is done. `model` must be in
    eval mode; `x` in [0, 1] and `y` its true labels (on the CPU). `progress(message, done
    cells, cells)` also hears, inside a cell, which member attack runs, its step or query
    count, the samples still standing and an ETA for that member; `on_plan` gets the plan
    (cells, samples, passes, time bound) before any attack runs. A randomized model
    (declared, or two forward passes that differ) is attacked with ``eot=DEFAULT_EOT`` by
    every attack that was not given an ``eot`` (the parameter is then part of the key).
    """
    check_images(x, model.input_shape)
    check_labels(y, len(x), model.num_classes)
    model.eval()
    attacks = eot_specs(model, x, attacks)
    cells = [(spec, float(eps)) for spec in attacks for eps in grid_for(spec, eps_grid)]
    keys = [ResultKey(model_id, defense, spec.key(), eps, subset) for spec, eps in cells]
    if on_plan is not None:
        device = next(model.parameters()).device
        costs = pass_seconds(model, x[:batch_size].to(device))
        on_plan(plan_grid([(spec.build(eps), store.has(k)) for (spec, eps), k in zip(cells, keys, strict=True)],
                          len(x), costs))
    clean_pred: torch.Tensor | None = None
    for i, ((spec, eps), key) in enumerate(zip(cells, keys, strict=True)):
        message = f"{model_id} {spec.label} eps={eps:g}"
        if progress is not None:
            progress(message, i, len(cells))
        if store.has(key):
            continue
        if clean_pred is None:
            clean_pred = batched_predict(model, x, batch_size)
        inner = cell_progress(progress, message, i, len(cells), len(x), batch_size)
        metrics, per_sample = evaluate_cell(model, x, y, spec, eps, batch_size, clean_pred, inner)
        store.put(key, metrics, per_sample)
    if progress is not None:
        progress("done", len(cells), len(cells))
    return keys


def cell_progress(progress: ProgressFn | None, message: str, cell: int, cells: int, n: int, batch_size: int):
    """An attack-progress callback (for `evaluate_cell`) that extends the cell's message with the
    member's state and ETA, reported to `progress` as cell `cell` of `cells`."""
    if progress is None:
        return None
    # a member starts when the previous event (or the cell) ended: members run one after another
    state: dict[str, float | str] = {"member": "", "start": time.perf_counter(), "last": time.perf_counter(),
                                     "done": 0.0}
    batches = -(-n // batch_size)

    def inner(member: str, done: int, total: int, standing: int) -> None:
        now = time.perf_counter()
        if member != state["member"] or done < float(state["done"]):
            state.update(member=member, start=state["last"])
        state.update(done=done, last=now)
        eta = (now - float(state["start"])) / max(done, 1) * (total - done)
        where = f" (batch of {min(n, batch_size)} of {n})" if batches > 1 else ""
        progress(f"{message} | {member} {done}/{total}, {standing} standing{where}, member ETA {eta:.0f} s",
                 cell, cells)

    return inner


def grid_for(spec: AttackSpec, eps_grid: Sequence[float]) -> list[float]:
    """Minimum-norm attacks run once (eps = -1 marks "unbounded"); others once per eps."""
    if get_attack_class(spec.name).minimum_norm:
        return [-1.0]
    if not eps_grid:
        raise ConfigError("the eps grid is empty")
    if any(e < 0 for e in eps_grid):
        raise ConfigError(f"eps values must be >= 0, got {list(eps_grid)}")
    return list(eps_grid)
