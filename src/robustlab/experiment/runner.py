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

from robustlab.core.errors import CheckpointError, RobustlabError
from robustlab.data import Dataset
from robustlab.evaluate.runner import AttackSpec, cell_progress, grid_for
from robustlab.evaluate.summary import summarize
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
    eval_data,
    eval_split,
    run_eval_task,
    run_probe_task,
    run_train_task,
)
from robustlab.store.checkpoints import load_checkpoint, read_checkpoint_config
from robustlab.store.results import ResultKey, ResultStore
from robustlab.train.adversarial import recipe_label
from robustlab.train.defaults import training_warning

Progress = Callable[[str, int, int], None]
"""progress(message, done, total): called as work advances."""

DEFENSE, SUBSET = "none", "test"
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


def plan_cells(spec: ExperimentSpec) -> list[tuple[AttackSpec, float]]:
    """Every (attack, eps) cell of one model, in grid order (checks the eps grid)."""
    return [(attack, float(eps)) for attack in spec.attacks for eps in grid_for(attack, spec.eps)]


def run_experiment(
    spec: ExperimentSpec,
    run_dir: str | Path,
    *,
    device: str | None = None,
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> list[dict[str, Any]]:
    """Run `spec` into `run_dir`; return the summary rows (see `robustlab.evaluate.summarize`).
    Raises `GridFailed` (after the rest of the grid is done and stored) when a task failed."""
    outcome = run_grid(spec, run_dir, device=device, progress=progress, executor=executor)
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
) -> GridOutcome:
    """Run `spec` into `run_dir` on `executor` (default: the one `spec.executor` names, closed
    at the end); cells already stored are skipped. Failed tasks are listed, never raised."""
    run_dir = Path(run_dir)
    cells = plan_cells(spec)
    data = load_data(spec)
    x_eval, y_eval = eval_data(spec.data)
    own = executor is None
    executor = executor or make_executor(spec.executor, debug=debug)  # before anything is written
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with ResultStore(run_dir) as store:
            store.set_meta("experiment", spec.to_dict())
            store.set_meta("data", {"name": data.name, "source": data.source, "n_train": len(data.y_train),
                                    "n_test": len(data.y_test), "n_eval": len(y_eval),
                                    "input_shape": list(data.input_shape), "classes": list(data.classes)})
            driver = _Driver(spec, run_dir, store, executor, data, cells, device, progress)
            return driver.run()
    finally:
        if own:
            executor.close()


class _Driver:
    """One run of the grid: submits tasks as their inputs are ready, writes what comes back."""

    def __init__(self, spec: ExperimentSpec, run_dir: Path, store: ResultStore, executor: Executor,
                 data: Dataset, cells: list[tuple[AttackSpec, float]], device: str | None,
                 progress: Progress | None) -> None:
        self.spec, self.run_dir, self.store, self.executor = spec, run_dir, store, executor
        self.data, self.cells, self.progress = data, cells, progress
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
        self.n_eval = len(eval_data(spec.data)[1])

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
        self.outcome.rows = summarize(self.store, models=list(self.models_meta))
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
        self.store.set_meta("models", self.models_meta)
        source = ModelSource(key, None if blob is not None else str(directory))
        tasks = []
        for attack, eps in self.cells:
            cell_key = ResultKey(key, DEFENSE, attack.key(), eps, SUBSET)
            if self.store.has(cell_key):
                self.outcome.stored_before += 1
                self.done_cells += 1
                continue
            tasks.append(EvalTask(cell_key, source, self.spec.data, attack, eps, self.spec.batch_size,
                                  self.eval_runtime))
        probed = key in (self.store.get_meta("probes", {}) or {}) and key in (
            self.store.get_meta("identification", {}) or {})
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

    def _probed(self, out: ProbeOutput) -> None:
        probes = self.store.get_meta("probes", {}) or {}
        probes[out.key] = out.probe
        self.store.set_meta("probes", probes)
        identification = self.store.get_meta("identification", {}) or {}
        identification[out.key] = out.identification
        self.store.set_meta("identification", identification)

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
