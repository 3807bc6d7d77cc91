"""Run an experiment: check everything, open the run directory, and hand the grid to the driver
(`robustlab.experiment.driver`, the one writer) on an executor; `run_experiment` raises when
a task failed, `run_grid` returns the outcome with the failures listed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustlab.core.contract import RobustModel
from robustlab.core.environment import check_threads, environment
from robustlab.core.errors import ConfigError
from robustlab.core.progress import resolve_progress
from robustlab.core.runtime import pick_device
from robustlab.data import Dataset
from robustlab.evaluate.run_dir import check_run_dir, clear_store
from robustlab.evaluate.runner import Cell, check_model_data
from robustlab.evaluate.runner import plan_cells as plan_attack_cells
from robustlab.evaluate.samples import EvalSet, eval_set
from robustlab.experiment.driver import Driver, Progress
from robustlab.experiment.executors import Executor, make_executor
from robustlab.experiment.outcome import GridFailed, GridOutcome
from robustlab.experiment.plan import Plan, plan_experiment
from robustlab.experiment.spec import ExperimentSpec
from robustlab.experiment.spec_parts import GivenModel
from robustlab.experiment.tasks import dataset_for
from robustlab.models import build_model
from robustlab.store.checkpoints import load_checkpoint
from robustlab.store.results import ResultStore

__all__ = ["PreparedGrid", "execute_grid", "load_data", "plan_cells", "prepare_grid", "run_experiment", "run_grid"]


def load_data(spec: ExperimentSpec) -> Dataset:
    """The (first) data set of `spec`."""
    return dataset_for(spec.data)


def plan_cells(spec: ExperimentSpec) -> dict[tuple[str, float | None], Cell]:
    """Every (attack id, eps) cell of the grid, each over its attack's own eps grid and built (so
    every parameter and budget is checked before anything runs; `robustlab.evaluate.plan_cells`)."""
    cells: dict[tuple[str, float | None], Cell] = {}
    for a in spec.attacks:
        for cell in plan_attack_cells([a.spec], list(a.eps)):
            cells[(a.id, cell.eps)] = cell
    return cells


def run_experiment(
    spec: ExperimentSpec,
    run_dir: str | Path,
    *,
    device: str | None = None,
    progress: Progress | bool | None = True,
    executor: Executor | None = None,
    overwrite: bool = False,
    threads: int | None = None,
) -> list[dict[str, Any]]:
    """Run `spec` into `run_dir`; return the summary rows (see `robustlab.evaluate.summarize`).
    Raises `GridFailed` (after the rest of the grid is done and stored) when a task failed.
    ``overwrite`` deletes the run directory's earlier results first (see `run_grid`).
    ``progress``: True draws the CLI's bar when stderr is a terminal (silent otherwise), False
    silences it, a callback ``progress(message, done, total)`` hears it."""
    with resolve_progress(progress) as report:
        outcome = run_grid(spec, run_dir, device=device, progress=report, executor=executor, overwrite=overwrite,
                           threads=threads)
    if outcome.failures:
        raise GridFailed(outcome)
    return outcome.rows


@dataclass
class PreparedGrid:
    """A grid checked and planned, nothing written (`prepare_grid`): the plan, every (attack id,
    eps) cell built, the evaluation sets per data key, the given models loaded, and the run
    directory's state ("new", "resume" or "replace")."""

    spec: ExperimentSpec
    run_dir: Path
    plan: Plan
    cells: dict[tuple[str, float | None], Cell]
    samples: dict[str, EvalSet]
    given: dict[str, RobustModel]
    state: str
    chosen: bool = False


def prepare_grid(spec: ExperimentSpec, run_dir: str | Path, *, overwrite: bool = False,
                 samples: Mapping[str, EvalSet] | None = None) -> PreparedGrid:
    """Everything `run_grid` checks before anything is trained or written, done once: every
    attack at every eps, each data set and its evaluated samples, every model config (a given
    model loaded, through all of `load_checkpoint`'s checks, and checked against its samples),
    and the run directory (not a file, not a foreign or older database, not a non-empty folder
    of something else, writable). Writes nothing; `run --dry-run` stops here.
    `samples`: the evaluation sets per data key when the caller chose them (the Python API)."""
    run_dir = Path(run_dir)
    plan = plan_experiment(spec)
    cells = plan_cells(spec)
    chosen = samples is not None
    sets = dict(samples) if samples is not None else {
        dspec.key: eval_set(dataset_for(dspec), dspec.n_eval, dspec.seed) for dspec in spec.datasets}
    given: dict[str, RobustModel] = {}
    for i, mspec in enumerate(spec.models):  # bad model configs fail here, before any training
        if mspec.given is not None:
            given[mspec.id] = load_given(mspec.given, sets[spec.dataset(mspec.data).key], f"models[{i}]")
            continue
        data = dataset_for(spec.dataset(mspec.data))
        try:
            build_model(mspec.model_config(data.num_classes, data.input_shape))
        except (ConfigError, TypeError, ValueError, ArithmeticError, RuntimeError, MemoryError) as exc:
            raise ConfigError(f"models[{i}] ({mspec.id}): {' '.join(str(exc).split())}") from None
    state = check_run_dir(run_dir, overwrite=overwrite, allow=("checkpoints", "defenses"))
    return PreparedGrid(spec, run_dir, plan, cells, sets, given, state, chosen)


def run_grid(
    spec: ExperimentSpec,
    run_dir: str | Path,
    *,
    device: str | None = None,
    progress: Progress | None = None,
    executor: Executor | None = None,
    debug: bool = False,
    overwrite: bool = False,
    threads: int | None = None,
    command: str | None = None,
    samples: Mapping[str, EvalSet] | None = None,
    index: bool = True,
    finish: Callable[[GridOutcome], None] | None = None,
) -> GridOutcome:
    """Run `spec` into `run_dir` on `executor` (default: the one `spec.executor` names, closed
    at the end); cells already stored are skipped. Failed tasks are listed, never raised.

    Everything is checked before anything is trained or written (`prepare_grid`, then the
    executor is started); ``overwrite`` deletes the run directory's earlier results. Rows are
    keyed completely (see `ResultKey`). See `execute_grid`."""
    threads = check_threads(threads)
    prepared = prepare_grid(spec, run_dir, overwrite=overwrite, samples=samples)
    return execute_grid(prepared, device=device, progress=progress, executor=executor, debug=debug,
                        threads=threads, command=command, index=index, finish=finish)


def execute_grid(
    prepared: PreparedGrid,
    *,
    device: str | None = None,
    progress: Progress | None = None,
    executor: Executor | None = None,
    debug: bool = False,
    threads: int | None = None,
    command: str | None = None,
    index: bool = True,
    on_start: Callable[[], None] | None = None,
    finish: Callable[[GridOutcome], None] | None = None,
) -> GridOutcome:
    """Run a prepared grid: start the executor (before anything is written), open the store and
    hand the grid to the driver, the one writer.

    Tasks run in this process (the local executor) at ``threads`` torch intra-op threads
    (default `DEFAULT_THREADS`), Ray tasks at the CPUs they ask for, never at whatever the
    machine has: rows do not change with its core count. The store's meta "environment"
    records it, with versions, commit, device, data digests and ``command`` (the line that
    reproduces the run). A given model (`ModelSpec.given`) is evaluated, never trained.
    ``index=False`` (a one-model evaluation) leaves the store's experiment meta and plan index
    alone, so evaluating into an experiment's run directory does not replace its paper tables.
    `on_start()` is called once the store is made (the plan line of `evaluate`); `finish(outcome)`
    once the grid is done, while the store is still open for writing (the report and what the
    command prints are read then, so the writer, closing last, leaves no WAL side files)."""
    spec, run_dir, samples = prepared.spec, prepared.run_dir, prepared.samples
    threads = check_threads(threads)
    own = executor is None
    executor = executor or make_executor(spec.executor, debug=debug)  # before anything is written
    try:
        if prepared.state == "replace":
            clear_store(run_dir)
        with ResultStore(run_dir) as store:
            sets = store.update_meta("evaluation_sets", {s.digest: s.describe() for s in samples.values()})
            if index:
                store.set_meta("experiment", spec.to_dict())
                store.set_meta("datasets", {k: s.describe() for k, s in samples.items()})
            if len(samples) == 1 and (index or store.get_meta("data") is None or len(sets) == 1):
                store.set_meta("data", next(iter(samples.values())).describe())
            driver = Driver(spec, run_dir, store, executor, prepared.plan, prepared.cells, samples, device, progress,
                            threads, given=prepared.given, chosen_samples=prepared.chosen, index=index)
            first = next(iter(samples.values())).describe()
            store.set_meta("environment", environment(
                device or pick_device(None), driver.eval_runtime.threads or threads, first,
                train_threads=driver.train_runtime.threads or threads, executor=executor.name,
                datasets={k: {"name": d["name"], "version": d["version"], "samples": d["samples"]}
                          for k, d in ((k, s.describe()) for k, s in samples.items())}, command=command))
            if on_start is not None:  # the store is made and its meta written: the run starts now
                on_start()
            outcome = driver.run()
            if finish is not None:
                finish(outcome)
            return outcome
    finally:
        if own:
            executor.close()


def load_given(given: GivenModel, samples: EvalSet, where: str) -> RobustModel:
    """The given model, loaded (a checkpoint, through all of `load_checkpoint`'s checks) and checked
    against the samples it is evaluated on (shape, dtype, classes: one `InputError` line)."""
    if given.kind == "checkpoint":
        model = load_checkpoint(str(given.path)).eval()
    elif given.model is None:
        raise ConfigError(f"{where}: a given {given.kind} model needs the model itself")
    else:
        model = given.model
    check_model_data(model, samples)
    return model
