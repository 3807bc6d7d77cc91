"""Run attacks over an eps grid against a model, batch by batch, into the results store.

`plan_cells` resolves and validates every (attack, eps) cell before anything runs;
`evaluate_grid` runs the cells a store does not hold yet, each keyed by everything that can
change its numbers (see `robustlab.store.results.ResultKey`).
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from robustlab.attacks.autoattack import AutoAttack
from robustlab.attacks.base import Attack
from robustlab.attacks.eot import DEFAULT_EOT, is_randomized
from robustlab.attacks.progress import reporting
from robustlab.attacks.registry import get_attack_class, make_attack
from robustlab.attacks.trace import tracing
from robustlab.core.contract import RobustModel, batched_predict, eval_mode
from robustlab.core.digest import canonical, model_digest
from robustlab.core.errors import CheckpointError, ConfigError, InputError
from robustlab.core.results import AttackResult
from robustlab.core.threat import check_eps
from robustlab.core.validation import check_int, check_labels, check_model_input
from robustlab.evaluate.cell_extras import cell_extras
from robustlab.evaluate.metrics import cell_metrics, per_sample_outcomes
from robustlab.evaluate.plan import GridPlan, pass_seconds, plan_grid
from robustlab.evaluate.samples import EvalSet
from robustlab.selftest.indicators import cell_indicators
from robustlab.store.results import ResultKey, ResultStore

DEFAULT_ATTACKS = ("autoattack", "fgsm")
"""The evaluation run when none is named (`evaluate`, experiment files): the ensemble (APGD-CE,
APGD-T, Square) plus FGSM, which the single-step masking check needs."""


@dataclass(frozen=True)
class AttackSpec:
    """An attack by name with the parameters the user gave, without eps (eps comes from the grid)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        get_attack_class(self.name)  # unknown names fail here, before any work
        if not isinstance(self.params, dict):
            raise ConfigError(f"{self.name}: attack parameters must be a mapping, got {self.params!r}")
        if "eps" in self.params:
            raise ConfigError(f"{self.name}: give eps through the eps grid, not the attack parameters")

    @property
    def minimum_norm(self) -> bool:
        return get_attack_class(self.name).minimum_norm

    def build(self, eps: float | None = None) -> Attack:
        """The attack at `eps` (ignored by minimum-norm attacks); bad parameters raise `ConfigError`.

        A transfer attack's ``source`` may be a checkpoint path: it is loaded here."""
        params = dict(self.params)
        if not self.minimum_norm:
            if eps is None:
                raise ConfigError(f"{self.name} is a fixed-budget attack: it needs an eps")
            params["eps"] = eps
        if isinstance(params.get("source"), str):  # transfer: the source model is a checkpoint path
            from robustlab.store.checkpoints import load_checkpoint

            try:
                params["source"] = load_checkpoint(params["source"]).eval()
            except CheckpointError as exc:
                raise ConfigError(f"{self.name}: cannot load the source model: {exc}") from None
        return make_attack(self.name, **params)

    def key(self) -> str:
        """Canonical JSON of the name and the parameters as given (not a results key: see `plan_cells`)."""
        return canonical({"name": self.name, **self.params})

    @property
    def label(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.name}({shown})" if shown else self.name


def spec_label(spec: dict[str, Any]) -> str:
    """A short label for a resolved attack spec: its name and the parameters that differ from the
    attack's defaults (eps and nested specs left out), e.g. "pgd(steps=5)"."""
    spec = dict(spec)
    name = str(spec.pop("name"))
    try:
        defaults = {k: p.default for k, p in get_attack_class(name).parameters().items()}
    except ConfigError:
        defaults = {}
    shown = []
    for k, v in sorted(spec.items()):
        if k in ("eps", "attack_spec") or (k in defaults and defaults[k] is not inspect.Parameter.empty
                                            and _same(defaults[k], v)):
            continue
        shown.append(f"{k}={v}")
    return f"{name}({', '.join(shown)})" if shown else name


def _same(default: Any, value: Any) -> bool:
    if isinstance(default, (tuple, list)):
        default = list(default)
    return bool(default == value) and isinstance(default, bool) == isinstance(value, bool)


@dataclass(frozen=True)
class Cell:
    """One validated (attack, eps) cell: the built attack and the parts of its result key."""

    spec: AttackSpec
    eps: float | None
    attack: Attack
    attack_key: str
    label: str

    @property
    def info(self) -> dict[str, Any]:
        """The threat model of the cell, stored with its metrics (kind, norm, members' kinds)."""
        return {
            "label": self.label,
            "kind": self.attack.kind.value,
            "norm": self.attack.budget.norm.value,
            "member_kinds": sorted({str(m.kind) for m in self.attack.members()}),
        }


def plan_cells(attacks: Sequence[AttackSpec], eps_grid: Sequence[float]) -> list[Cell]:
    """Every (attack, eps) cell, each attack built (so every parameter is checked) before any runs.

    Fixed-budget attacks run once per eps (each a finite number >= 0); minimum-norm attacks
    run once, with eps None. Raises `ConfigError` for an empty plan or a bad value.
    """
    if not attacks:
        raise ConfigError("no attacks to run: give at least one attack")
    grid = [check_eps(e, f"eps {e!r}") for e in eps_grid]
    if any(not a.minimum_norm for a in attacks) and not grid:
        raise ConfigError("the eps grid is empty")
    if len(set(grid)) != len(grid):
        raise ConfigError(f"the eps grid repeats a value: {list(eps_grid)}")
    cells: list[Cell] = []
    seen: set[tuple[str, float | None]] = set()
    for spec in attacks:
        for eps in [None] if spec.minimum_norm else grid:
            attack = spec.build(eps)
            resolved = attack.spec()
            resolved.pop("eps", None)
            key = canonical(resolved)
            if (key, eps) in seen:
                continue  # the same attack given twice (e.g. "pgd" and "pgd(steps=40)")
            seen.add((key, eps))
            cells.append(Cell(spec, eps, attack, key, spec_label(resolved)))
    return cells


def run_attack(
    attack: Attack, model: RobustModel, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256
) -> AttackResult:
    """`attack` over (x, y) in batches on the model's device; results gathered on the CPU."""
    device = next(model.parameters()).device
    parts: list[AttackResult] = []
    for i in range(0, len(x), batch_size):
        r = attack(model, x[i : i + batch_size].to(device), y[i : i + batch_size].to(device))
        parts.append(r)
    extras: dict[str, Any] = {}
    for name, first in (parts[0].extras.items() if parts else ()):
        if isinstance(first, torch.Tensor) and all(
            isinstance(p.extras.get(name), torch.Tensor) and p.extras[name].shape[:1] == p.success.shape[:1]
            for p in parts
        ):
            extras[name] = torch.cat([p.extras[name].cpu() for p in parts])
    return AttackResult(
        x_adv=torch.cat([p.x_adv.cpu() for p in parts]),
        success=torch.cat([p.success.cpu() for p in parts]),
        distance=torch.cat([p.distance.cpu() for p in parts]),
        queries=torch.cat([p.queries.cpu() for p in parts]),
        prediction=torch.cat([p.prediction.cpu() for p in parts]),
        extras=extras,
    )


def member_success(attack: Attack, result: AttackResult) -> list[dict[str, Any]]:
    """For an ensemble, how many samples each member fooled (from ``extras["member"]``, the
    index of the member that fooled each sample): [{"label", "kind", "count"}] in run order."""
    members = attack.members()
    if not members:
        return []
    member = result.extras.get("member")  # absent when nothing ran (eps 0, or every sample fooled clean)
    index = member.cpu() if isinstance(member, torch.Tensor) else torch.full((len(result),), -1.0)
    success = result.success.cpu()
    out = []
    for i, m in enumerate(members):
        spec = m.spec()
        spec.pop("eps", None)
        out.append({"label": spec_label(spec), "kind": str(m.kind), "count": int(((index == i) & success).sum())})
    return out


def check_model_data(model: RobustModel, data: EvalSet) -> None:
    """Raise `InputError` unless `model` can be evaluated on `data` (shape, dtype, classes)."""
    if not hasattr(model, "predict") or not hasattr(model, "num_classes"):
        raise InputError("the model does not follow the robustlab model contract (predict, num_classes)")
    shape = tuple(getattr(model, "input_shape", ()) or ())
    if shape and tuple(data.x.shape[1:]) != shape:
        raise InputError(
            f"the model expects images of shape {shape}, {data.name} gives {tuple(data.x.shape[1:])} "
            "(check --data / --resize)"
        )
    param = next(model.parameters(), None)
    if param is not None and param.dtype != data.x.dtype:
        raise InputError(f"the model's weights are {param.dtype}, the images {data.x.dtype}")
    try:
        check_labels(data.y, len(data.y), model.num_classes, name=f"{data.name} labels")
    except InputError as exc:
        raise InputError(f"{exc}: the model has {model.num_classes} classes (check --data)") from None


ProgressFn = Callable[[str, int, int], None]


def evaluate_cell(
    model: RobustModel,
    x: torch.Tensor,
    y: torch.Tensor,
    cell: Cell | AttackSpec,
    eps: float | None = None,
    batch_size: int = 256,
    clean_pred: torch.Tensor | None = None,
    attack_progress: Callable[[str, int, int, int], None] | None = None,
) -> tuple[dict[str, Any], dict[str, list]]:
    """One (attack, eps) cell against `model`: its metrics (with the cell's threat model and, for
    an ensemble, each member's successes) and per-sample record. Needs no store: the experiment
    executors run it on workers and the driver writes the row. `cell` is a planned `Cell`, or an
    `AttackSpec` with its `eps`. `metrics["seconds"]` is the attack's wall time; the per-cell
    extras (confidence, MSE, SSIM, ranks, detection AUC) come from `cell_extras`.
    `attack_progress(member, done, total, standing)` hears the attack's progress inside the cell.
    """
    if isinstance(cell, AttackSpec):
        cell = plan_cells([cell], [] if eps is None else [eps])[0]
    with eval_mode(model):
        if clean_pred is None:
            clean_pred = batched_predict(model, x, batch_size)
        start = time.perf_counter()
        with reporting(attack_progress), tracing():
            result = run_attack(cell.attack, model, x, y, batch_size)
        seconds = time.perf_counter() - start
        extra, extra_metrics = cell_extras(model, x, y, result, attack_name=cell.attack.name,
                                           K=getattr(cell.attack, "K", None), batch_size=batch_size)
        if cell.eps:  # fixed-budget cells that can move: the indicators of attack failure
            indicators, flags = cell_indicators(model, cell.attack, x, y, result, batch_size)
            extra_metrics["indicators"] = indicators
            extra.update({f"indicator_{k}": v for k, v in flags.items()})
        result.extras.pop("loss_trace", None)
    per_sample = per_sample_outcomes(x, y, clean_pred, result)
    metrics = cell_metrics(per_sample)
    per_sample.update(extra)
    metrics.update(extra_metrics)
    metrics["seconds"] = seconds
    metrics.update(cell.info)
    draws = result.extras.get("draw_accuracy")
    if isinstance(draws, torch.Tensor):  # a randomized model: mean accuracy over draws beside the any-draw verdict
        metrics["robust_accuracy_mean_over_draws"] = float(draws.mean())
        metrics["eot_draws"] = cell.attack.eot  # robust_accuracy: right on every one of these draws
    members = member_success(cell.attack, result)
    if members:
        metrics["member_success"] = members
    return metrics, per_sample


def grid_for(spec: AttackSpec, eps_grid: Sequence[float]) -> list[float | None]:
    """The budgets `spec` runs at: None once for a minimum-norm attack, else every eps (checked)."""
    return [c.eps for c in plan_cells([spec], eps_grid)]


def cell_key(cell: Cell, model_id: str, digest: str, data: EvalSet, defense: str, batch_size: int) -> ResultKey:
    """The complete result key of `cell` for one model on `data`."""
    return ResultKey(
        model=model_id, defense=defense, attack=cell.attack_key, eps=cell.eps, subset=data.subset,
        norm=cell.attack.norm, model_digest=digest, data=data.data_key, samples=data.digest,
        batch="independent" if cell.attack.batch_independent else str(batch_size),
    )


def eot_specs(model: RobustModel, x: torch.Tensor, attacks: Sequence[AttackSpec]) -> list[AttackSpec]:
    """`attacks`, each given ``eot=DEFAULT_EOT`` when `model` is randomized (declared, or two
    forward passes on a few of `x` differ) and the spec sets no ``eot`` itself; call it before
    the result keys are made, so the keys carry the parameter."""
    if not len(x) or not is_randomized(model, x[:8].to(next(model.parameters()).device)):
        return list(attacks)
    return eot_specs_for_randomized(attacks)


def eot_specs_for_randomized(attacks: Sequence[AttackSpec]) -> list[AttackSpec]:
    """`attacks` for a model known to be randomized: the ensemble without a ``version`` runs
    AutoAttack's ``rand`` protocol (APGD-CE and APGD-DLR, EOT over 20 draws), every other attack
    (another version of the ensemble included) is given ``eot=DEFAULT_EOT``; a spec that sets
    ``eot`` itself, or asks for ``rand``, is returned as it is."""
    out = []
    for s in attacks:
        is_ensemble = get_attack_class(s.name) is AutoAttack
        if "eot" in s.params or (is_ensemble and s.params.get("version") == "rand"):
            out.append(s)
        elif is_ensemble and "version" not in s.params:
            out.append(AttackSpec(s.name, {**s.params, "version": "rand"}))
        else:
            out.append(AttackSpec(s.name, {**s.params, "eot": DEFAULT_EOT}))
    return out


def grid_cells(
    model: RobustModel, samples: EvalSet, attacks: Sequence[AttackSpec] | Sequence[Cell], eps_grid: Sequence[float]
) -> list[Cell]:
    """The cells `evaluate_grid` runs for `model`: `attacks` (specs, or cells from `plan_cells`)
    over `eps_grid`, with ``eot=DEFAULT_EOT`` where the model is randomized (see `eot_specs`)."""
    specs = list({(s := a.spec if isinstance(a, Cell) else a).key(): s for a in attacks}.values())
    with eval_mode(model):
        randomized = eot_specs(model, samples.x, specs)
    cells = [a for a in attacks if isinstance(a, Cell)]
    if len(cells) != len(attacks) or randomized != specs:
        cells = plan_cells(randomized, eps_grid)
    return cells


def evaluate_grid(
    model: RobustModel,
    model_id: str,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: Sequence[AttackSpec] | Sequence[Cell],
    eps_grid: Sequence[float],
    store: ResultStore,
    *,
    defense: str = "none",
    subset: str = "test",
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    data: EvalSet | None = None,
    on_plan: Callable[[GridPlan], None] | None = None,
) -> list[ResultKey]:
    """Run every (attack, eps) cell not yet in `store`; return the keys of all cells.

    `x` in [0, 1] and `y` its true labels (on the CPU), or `data` (an `EvalSet`, which then
    replaces x and y and names the data set in the keys). `attacks` are specs (planned here
    with `eps_grid`) or cells from `plan_cells`. Each cell is stored in its own transaction
    the moment it is done. The model runs in eval mode; its own mode is given back.
    `progress(message, done cells, cells)` also hears, inside a cell, which member attack runs,
    its step or query count, the samples still standing and an ETA for that member; `on_plan`
    gets the plan (cells, samples, passes, time bound) before any attack runs. A randomized model
    (declared, or two forward passes that differ) is attacked with ``eot=DEFAULT_EOT`` by every
    attack that was not given an ``eot`` (the parameter is then part of the resolved spec and key).
    """
    samples = data if data is not None else EvalSet(x, y, subset=subset)
    batch_size = check_int(batch_size, "batch_size", 1)
    check_model_data(model, samples)
    cells = grid_cells(model, samples, attacks, eps_grid)
    digest = model_digest(model)
    clean_pred: torch.Tensor | None = None
    keys = [cell_key(cell, model_id, digest, samples, defense, batch_size) for cell in cells]
    n = len(samples)
    with eval_mode(model):
        device = next(model.parameters()).device
        check_model_input(model, samples.x[:1].to(device))
        if on_plan is not None:
            costs = pass_seconds(model, samples.x[:batch_size].to(device))
            on_plan(plan_grid([(c.attack, store.has(k)) for c, k in zip(cells, keys, strict=True)], n, costs))
        for i, (cell, key) in enumerate(zip(cells, keys, strict=True)):
            eps_text = "min-norm" if cell.eps is None else f"{cell.eps:g}"
            message = f"{model_id} {cell.label} eps={eps_text}"
            if progress is not None:
                progress(message, i, len(cells))
            if store.has(key):
                continue
            if clean_pred is None:
                clean_pred = batched_predict(model, samples.x, batch_size)
            inner = cell_progress(progress, message, i, len(cells), n, batch_size)
            metrics, per_sample = evaluate_cell(model, samples.x, samples.y, cell, cell.eps, batch_size, clean_pred,
                                                inner)
            store.put(key, metrics, per_sample)
    if progress is not None:
        progress("done", len(cells), len(cells))
    return keys


def attack_of(key: ResultKey) -> dict[str, Any]:
    """The resolved attack spec of a result key."""
    return json.loads(key.attack)


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
