"""Run an experiment: plan the grid's tasks, hand them to an executor, record what comes back.

Everything lands in one run directory: ``checkpoints/<model id>/`` (safetensors + config),
``results.sqlite`` (one row per cell), so a rerun skips what is done and an interrupted
run resumes where it stopped. The tasks (`robustlab.experiment.tasks`) run wherever the
executor puts them (this process, or Ray workers); the driver here is the only writer of
the run directory, one transaction per cell as it arrives. A failing task does not stop
the grid: the others complete and the failures are listed in the outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from robustlab.core.digest import model_digest
from robustlab.core.errors import CheckpointError, ConfigError, RobustlabError
from robustlab.data import Dataset
from robustlab.evaluate.runner import Cell, cell_key, cell_progress
from robustlab.evaluate.runner import plan_cells as plan_attack_cells
from robustlab.evaluate.samples import EvalSet, eval_set
from robustlab.evaluate.session import check_run_dir, clear_store
from robustlab.evaluate.summary import identification_key, probe_key, summarize
from robustlab.experiment.executors import Executor, Resources, make_executor
from robustlab.experiment.spec import ExperimentSpec, ModelSpec
from robustlab.experiment.tasks import (
    CheckpointBlob,
    EvalOutput,
    EvalTask,
    ModelSource,
    ProbeOutput,
    ProbeTask,
    Runtime,
    TrainOutput,
    TrainTask,
    dataset_for,
    eval_split,
    run_eval_task,
    run_probe_task,
    run_train_task,
)
from robustlab.models import build_model
from robustlab.store.checkpoints import load_checkpoint, read_checkpoint_config
from robustlab.store.results import ResultKey, ResultStore
from robustlab.train.adversarial import recipe_label
from robustlab.train.defaults import training_warning

Progress = Callable[[str, int, int], None]
"""progress(message, done, total): called as work advances."""

DEFENSE = "none"
__all__ = ["GridFailed", "GridOutcome", "TaskFailure", "eval_split", "load_data", "plan_cells", "run_experiment",
           "run_grid"]


@dataclass
class TaskFailure:
    """A task that failed: what it was (`kind`: train, probe or cell; `label`) and why (one line).
    `cells`: how many grid cells it leaves without a row (1 for a cell, all of a model's
    for its training)."""

    kind: str
    label: str
    error: str
    cells: int = 0

    def line(self) -> str:
        lost = f" ({self.cells} cells not run)" if self.kind == "train" and self.cells else ""
        return f"{self.kind} {self.label}: {self.error}{lost}"


@dataclass
class GridOutcome:
    """What a run did. `rows`: the summary table (`robustlab.evaluate.summarize`) of every
    model that is ready; `cells`: cells in the grid; `stored_before`: already in the store;
    `computed`: written by this run."""

    rows: list[dict[str, Any]]
    failures: list[TaskFailure] = field(default_factory=list)
    cells: int = 0
    stored_before: int = 0
    computed: int = 0
    trained: int = 0
    reused: int = 0
    executor: str = "local"

    def counts(self) -> dict[str, Any]:
        return {"cells": self.cells, "stored_before": self.stored_before, "computed": self.computed,
                "failed": sum(f.cells for f in self.failures), "trained": self.trained, "reused": self.reused,
                "executor": self.executor}


class GridFailed(RobustlabError):
    """Some tasks of the grid failed (the others completed and are stored)."""

    def __init__(self, outcome: GridOutcome) -> None:
        self.outcome = outcome
        n = len(outcome.failures)
        super().__init__(f"{n} task{'s' if n != 1 else ''} failed: " + "; ".join(f.line() for f in outcome.failures))


def load_data(spec: ExperimentSpec) -> Dataset:
    return dataset_for(spec.data)


def plan_cells(spec: ExperimentSpec) -> list[Cell]:
    """Every (attack, eps) cell of one model, in grid order, each attack built (so every parameter
    and budget is checked before anything runs; see `robustlab.evaluate.plan_cells`)."""
    return plan_attack_cells(spec.attacks, spec.eps)


def run_experiment(
    spec: ExperimentSpec,
    run_dir: str | Path,
    *,
    device: str | None = None,
    progress: Progress | None = None,
    executor: Executor | None = None,
    overwrite: bool = False,
) -> list[dict[str, Any]]:
    """Run `spec` into `run_dir`; return the summary rows (see `robustlab.evaluate.summarize`).
    Raises `GridFailed` (after the rest of the grid is done and stored) when a task failed.
    ``overwrite`` deletes the run directory's earlier results first (see `run_grid`)."""
    outcome = run_grid(spec, run_dir, device=device, progress=progress, executor=executor, overwrite=overwrite)
    if outcome.failures:
        raise GridFailed(outcome)
    return outcome.rows


def run_grid(
    spec: ExperimentSpec,
    run_dir: str | Path,
    *,
    device: str | None = None,
    progress: Progress | None = None,
    executor: Executor | None = None,
    debug: bool = False,
    overwrite: bool = False,
) -> GridOutcome:
    """Run `spec` into `run_dir` on `executor` (default: the one `spec.executor` names, closed
    at the end); cells already stored are skipped. Failed tasks are listed, never raised.

    Everything is checked before anything is trained or written: every attack at every eps,
    the data and the evaluated samples, every model config, and the run directory (not a file,
    not a foreign or older database, not a non-empty folder of something else, writable;
    ``overwrite`` deletes its earlier results). Rows are keyed completely (see `ResultKey`)."""
    run_dir = Path(run_dir)
    cells = plan_cells(spec)
    data = load_data(spec)
    samples = eval_set(data, spec.data.n_eval, spec.data.seed)
    for i, mspec in enumerate(spec.models):  # bad model configs fail here, before any training
        try:
            build_model(mspec.model_config(data.num_classes, data.input_shape))
        except (ConfigError, TypeError, ValueError) as exc:
            raise ConfigError(f"models[{i}] ({mspec.id}): {' '.join(str(exc).split())}") from None
    state = check_run_dir(run_dir, overwrite=overwrite, allow=("checkpoints",))
    own = executor is None
    executor = executor or make_executor(spec.executor, debug=debug)  # before anything is written
    try:
        if state == "replace":
            clear_store(run_dir)
        with ResultStore(run_dir) as store:
            store.set_meta("experiment", spec.to_dict())
            sets = store.update_meta("evaluation_sets", {samples.digest: samples.describe()})
            if store.get_meta("data") is None or len(sets) == 1:
                store.set_meta("data", samples.describe())
            driver = _Driver(spec, run_dir, store, executor, data, cells, device, progress, samples)
            return driver.run()
    finally:
        if own:
            executor.close()


class _Driver:
    """One run of the grid: submits tasks as their inputs are ready, writes what comes back."""

    def __init__(self, spec: ExperimentSpec, run_dir: Path, store: ResultStore, executor: Executor,
                 data: Dataset, cells: list[Cell], device: str | None,
                 progress: Progress | None, samples: EvalSet) -> None:
        self.spec, self.run_dir, self.store, self.executor = spec, run_dir, store, executor
        self.data, self.cells, self.progress, self.samples = data, cells, progress, samples
        self.digests: dict[str, str] = {}
        ex = spec.executor
        remote = executor.name != "local"
        self.eval_resources = Resources(ex.num_cpus, ex.num_gpus)
        self.train_resources = Resources(
            ex.num_cpus if ex.train_cpus is None else ex.train_cpus,
            ex.num_gpus if ex.train_gpus is None else ex.train_gpus,
        )

        def threads(cpus: float) -> int | None:  # a Ray task gets as many torch threads as CPUs it asked for
            return max(1, int(cpus)) if remote else None

        self.eval_runtime = Runtime(device, threads(self.eval_resources.num_cpus), spec.plugins)
        self.train_runtime = Runtime(device, threads(self.train_resources.num_cpus), spec.plugins)
        self.storage = Path(ex.storage) / spec.name if ex.storage else None
        self.models_meta: dict[str, Any] = {}
        self.outcome = GridOutcome(rows=[], cells=len(spec.models) * len(cells), executor=executor.name)
        self.done_cells = 0
        self._train_totals: dict[str, int] = {}  # optimizer steps of each model (heard in-process)
        self.n_eval = len(samples)

    # -- planning ----------------------------------------------------------------------------

    def run(self) -> GridOutcome:
        for mspec in self.spec.models:
            # auto training fields filled for this data and head: the digest names what is trained
            resolved = mspec.train.resolved(len(self.data.y_train), mspec.model.get("head", "softmax"))
            mspec = replace(mspec, train=resolved)
            digest = mspec.digest(self.spec.data, self.data.num_classes, self.data.input_shape)
            key = f"{mspec.id}:{digest}"
            directory = self._checkpoint_dir(mspec, digest)
            if _reusable(directory, digest):
                self.outcome.reused += 1
                blob = None if self.storage else CheckpointBlob.from_directory(directory)
                self._model_ready(mspec, key, directory, blob)
            else:
                task = TrainTask(mspec, self.spec.data, digest, self.train_runtime,
                                 str(self.storage) if self.storage else None)
                self._report(f"train {mspec.id}", 0, 1)
                self.executor.submit(
                    run_train_task, task, tag=("train", mspec, key), resources=self.train_resources, priority=1,
                    progress=lambda step, total, name=mspec.id: self._train_step(name, step, total),
                )
        while self.executor.pending():
            self._take(self.executor.next_done())
        self._report("done", self.done_cells, self.outcome.cells)
        self.outcome.rows = summarize(self.store, models=list(self.models_meta), samples=self.samples.digest)
        return self.outcome

    def _checkpoint_dir(self, mspec: ModelSpec, digest: str) -> Path:
        if self.storage is not None:
            return self.storage / f"{mspec.id}-{digest}"
        return self.run_dir / "checkpoints" / mspec.id

    def _model_ready(self, mspec: ModelSpec, key: str, directory: Path, blob: CheckpointBlob | None) -> None:
        """Record the model, then submit its probe and every cell not yet stored."""
        doc = read_checkpoint_config(directory)
        meta = doc["metadata"]
        self.models_meta[key] = {
            "id": mspec.id,
            "config": doc["model"],
            "checkpoint": str(directory),
            "clean_accuracy": meta["clean_accuracy"],
            "train": mspec.train.to_dict(),
            "train_seconds": meta["seconds"],
            "training": recipe_label(mspec.train.to_dict()),
            "warning": training_warning(meta["clean_accuracy"], self.data.num_classes, self.data.name),
            "history": meta["history"],
        }
        self.store.update_meta("models", {key: self.models_meta[key]})
        digest = model_digest(blob.load() if blob is not None else load_checkpoint(directory))  # the weights
        self.digests[key] = digest
        source = ModelSource(key, None if blob is not None else str(directory))
        tasks = []
        for cell in self.cells:
            row_key = cell_key(cell, key, digest, self.samples, DEFENSE, self.spec.batch_size)
            if self.store.has(row_key):
                self.outcome.stored_before += 1
                self.done_cells += 1
                continue
            tasks.append(EvalTask(row_key, source, self.spec.data, cell.spec, cell.eps, self.spec.batch_size,
                                  self.eval_runtime))
        probed = self.store.has(self._probe_key(key)) and self.store.has(self._identification_key(key))
        if not tasks and probed:
            return
        shared = self.executor.share(blob) if blob is not None else None
        if not probed:
            probe = ProbeTask(source, self.spec.data, tuple(self.spec.eps), self.eval_runtime)
            self.executor.submit(run_probe_task, probe, shared, tag=("probe", probe), resources=self.eval_resources)
        for task in tasks:
            self.executor.submit(run_eval_task, task, shared, tag=("cell", task), resources=self.eval_resources,
                                 progress=self._cell_progress(task))

    # -- results -----------------------------------------------------------------------------

    def _take(self, done) -> None:
        kind = done.tag[0]
        if kind == "train":
            _, mspec, key = done.tag
            if done.error is not None:
                self.outcome.failures.append(TaskFailure("train", mspec.id, done.error, len(self.cells)))
                self.done_cells += len(self.cells)
            else:
                self._trained(mspec, key, done.value)
            total = self._train_totals.get(mspec.id, 1)
            self._report(f"train {mspec.id}", total, total)
        elif kind == "probe":
            task: ProbeTask = done.tag[1]
            if done.error is not None:
                self.outcome.failures.append(TaskFailure("probe", task.model.key.split(":")[0], done.error))
            else:
                self._probed(done.value)
        else:
            cell: EvalTask = done.tag[1]
            self.done_cells += 1
            if done.error is not None:
                self.outcome.failures.append(TaskFailure("cell", cell.label, done.error, 1))
            else:
                out: EvalOutput = done.value
                if self.store.put(out.key, out.metrics, out.per_sample):
                    self.outcome.computed += 1
            self._report(cell.label, self.done_cells, self.outcome.cells)

    def _trained(self, mspec: ModelSpec, key: str, out: TrainOutput) -> None:
        self.outcome.trained += 1
        if out.blob is not None:
            directory = out.blob.write(self._checkpoint_dir(mspec, key.split(":")[1]))
        else:
            directory = Path(out.path)  # type: ignore[arg-type]
        self._model_ready(mspec, key, directory, out.blob)

    def _probe_key(self, key: str) -> ResultKey:
        return probe_key(key, self.digests[key], self.samples, DEFENSE)

    def _identification_key(self, key: str) -> ResultKey:
        return identification_key(key, self.digests[key], self.samples, list(self.spec.eps), DEFENSE,
                                  self.spec.batch_size)

    def _probed(self, out: ProbeOutput) -> None:
        self.store.put(self._probe_key(out.key), out.probe)
        self.store.put(self._identification_key(out.key), out.identification)

    def _cell_progress(self, task: EvalTask) -> Callable[[str, int, int, int], None] | None:
        """Progress inside a cell (heard where the executor runs the cell in this process)."""
        if self.progress is None:
            return None

        def live(message: str, _cell: int, total: int) -> None:
            self._report(message, self.done_cells, total)

        return cell_progress(live, task.label, 0, self.outcome.cells, self.n_eval, task.batch_size)

    def _train_step(self, name: str, step: int, total: int) -> None:
        self._train_totals[name] = total
        self._report(f"train {name}", step, total)

    def _report(self, message: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(message, done, total)


def _reusable(directory: Path, digest: str) -> bool:
    """A checkpoint at `directory` trained from the same specs (same digest) that loads cleanly."""
    if not (directory / "config.json").is_file():
        return False
    try:
        meta = read_checkpoint_config(directory)["metadata"]
        if meta.get("experiment_digest") != digest:
            return False
        load_checkpoint(directory, torch.device("cpu"))
    except (CheckpointError, KeyError, TypeError):
        return False  # unreadable or stale: train afresh and overwrite it
    return True
