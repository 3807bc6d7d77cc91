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
from robustlab.evaluate.runner import AttackSpec, cell_progress
from robustlab.evaluate.summary import summarize
from robustlab.experiment.defenses import (
    DefenseOutput,
    DefenseTask,
    defense_digest,
    reusable_defense,
    run_defense_task,
)
from robustlab.experiment.executors import Executor, Resources, make_executor
from robustlab.experiment.plan import NONE, Plan, plan_experiment
from robustlab.experiment.spec import DefenseSpec, ExperimentSpec, ModelSpec
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
from robustlab.experiment.transfer import TransferTask, cell_key, plan_index, run_transfer_task
from robustlab.store.checkpoints import load_checkpoint, read_checkpoint_config
from robustlab.store.results import ResultKey, ResultStore
from robustlab.train.adversarial import recipe_label
from robustlab.train.defaults import training_warning

Progress = Callable[[str, int, int], None]
"""progress(message, done, total): called as work advances."""

SUBSET = "test"
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
    """The data set of a one-data-set experiment."""
    return dataset_for(spec.data)


def plan_cells(spec: ExperimentSpec, model: ModelSpec | None = None) -> list[tuple[AttackSpec, float]]:
    """Every undefended (attack, eps) cell of `model` (default: the first), in grid order;
    eps = -1 for a minimum-norm attack."""
    mid = (model or spec.models[0]).id
    return [(spec.attack(c.attack).spec, -1.0 if c.eps is None else c.eps)
            for c in plan_experiment(spec).cells_of(mid)]


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
    plan = plan_experiment(spec)
    data_meta = {}
    for dspec in spec.datasets:
        data = dataset_for(dspec)
        _, y_eval = eval_data(dspec)
        data_meta[dspec.key] = {"name": data.name, "source": data.source, "n_train": len(data.y_train),
                                "n_test": len(data.y_test), "n_eval": len(y_eval),
                                "input_shape": list(data.input_shape), "classes": list(data.classes)}
    own = executor is None
    executor = executor or make_executor(spec.executor, debug=debug)  # before anything is written
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with ResultStore(run_dir) as store:
            store.set_meta("experiment", spec.to_dict())
            store.set_meta("datasets", data_meta)
            if len(data_meta) == 1:
                store.set_meta("data", next(iter(data_meta.values())))
            driver = _Driver(spec, run_dir, store, executor, plan, device, progress)
            return driver.run()
    finally:
        if own:
            executor.close()


class _Driver:
    """One run of the grid: submits tasks as their inputs are ready, writes what comes back.

    A model's cells (and its defenses' builds) are submitted when it is trained or reused; a
    defense's cells when it is built or reused; a transfer group (source, attack, eps) when
    its source and every target are ready."""

    def __init__(self, spec: ExperimentSpec, run_dir: Path, store: ResultStore, executor: Executor,
                 plan: Plan, device: str | None, progress: Progress | None) -> None:
        self.spec, self.run_dir, self.store, self.executor = spec, run_dir, store, executor
        self.plan, self.progress = plan, progress
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
        counts = plan.counts()
        self.outcome = GridOutcome(rows=[], cells=counts["cells"] + counts["transfer"], executor=executor.name)
        self.done_cells = 0
        self.keys: dict[str, str] = {}
        self.ready: dict[tuple[str, str], tuple[ModelSource, Any]] = {}  # (model, defense) -> (source, blob)
        self.transfers_sent: set[tuple[str, str, float]] = set()
        self.submitted: set[ResultKey] = set()  # two attack ids with one spec and eps fill one row
        self._train_totals: dict[str, int] = {}  # optimizer steps of each model (heard in-process)

    # -- planning ----------------------------------------------------------------------------

    def run(self) -> GridOutcome:
        for mspec in self.spec.models:
            dspec = self.spec.dataset(mspec.data)
            data = dataset_for(dspec)
            # the training defaults left open (None) are filled for this data set's size and head
            mspec = replace(mspec, train=mspec.train.resolved(len(data.y_train), mspec.model.get("head", "softmax")))
            digest = mspec.digest(dspec, data.num_classes, data.input_shape)
            key = f"{mspec.id}:{digest}"
            directory = self._checkpoint_dir(mspec, digest)
            if _reusable(directory, digest):
                self.outcome.reused += 1
                blob = None if self.storage else CheckpointBlob.from_directory(directory)
                self._model_ready(mspec, key, directory, blob)
            else:
                task = TrainTask(mspec, dspec, digest, self.train_runtime,
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
        dspec = self.spec.dataset(mspec.data)
        data = dataset_for(dspec)
        self.models_meta[key] = {
            "id": mspec.id,
            "data": mspec.data,
            "config": doc["model"],
            "train": meta.get("train", mspec.train.to_dict()),
            "swept": [list(p) for p in mspec.swept],
            "checkpoint": str(directory),
            "clean_accuracy": meta["clean_accuracy"],
            "train_seconds": meta["seconds"],
            "training": recipe_label(mspec.train.to_dict()),
            "warning": training_warning(meta["clean_accuracy"], data.num_classes, data.name),
            "history": meta["history"],
        }
        self.store.set_meta("models", self.models_meta)
        self.keys[mspec.id] = key
        self.store.set_meta("index", plan_index(self.spec, self.plan, self.keys, SUBSET))
        source = ModelSource(key, None if blob is not None else str(directory))
        shared = self.executor.share(blob) if blob is not None else None
        self.ready[(mspec.id, NONE)] = (source, shared)
        probed = key in (self.store.get_meta("probes", {}) or {}) and key in (
            self.store.get_meta("identification", {}) or {})
        if not probed:
            probe = ProbeTask(source, dspec, tuple(self.spec.eps), self.eval_runtime)
            self.executor.submit(run_probe_task, probe, shared, tag=("probe", probe), resources=self.eval_resources)
        self._submit_cells(mspec, key, NONE, NONE, source, shared)
        for d in self.spec.defenses_for(mspec):
            self._defense(mspec, key, d, source, shared)
        self._submit_transfers()

    def _submit_cells(self, mspec: ModelSpec, key: str, defense_id: str, defense_key: str,
                      source: ModelSource, shared: Any) -> None:
        """Every planned cell of (model, defense) not yet stored."""
        dspec = self.spec.dataset(mspec.data)
        for c in self.plan.cells_of(mspec.id, defense_id):
            attack = self.spec.attack(c.attack).spec
            eps = -1.0 if c.eps is None else c.eps
            row = ResultKey(key, defense_key, attack.key(), eps, SUBSET)
            if self.store.has(row) or row in self.submitted:
                self.outcome.stored_before += 1
                self.done_cells += 1
                continue
            self.submitted.add(row)
            task = EvalTask(row, source, dspec, attack, eps, self.spec.batch_size, self.eval_runtime)
            self.executor.submit(run_eval_task, task, shared, tag=("cell", task), resources=self.eval_resources,
                                 progress=self._cell_progress(task))

    def _defense_dir(self, mspec: ModelSpec, d: DefenseSpec) -> Path:
        return self.run_dir / "defenses" / mspec.id / d.id

    def _defense(self, mspec: ModelSpec, key: str, d: DefenseSpec, source: ModelSource, shared: Any) -> None:
        """Reuse the cached defended model when it was built from this model and spec, else build it."""
        directory = self._defense_dir(mspec, d)
        digest = defense_digest(key, d)
        rows = [ResultKey(key, d.result_key, self.spec.attack(c.attack).spec.key(),
                          -1.0 if c.eps is None else c.eps, SUBSET) for c in self.plan.cells_of(mspec.id, d.id)]
        rows += [cell_key(t, self.spec, self.keys, SUBSET) for t in self.plan.transfers
                 if t.target == mspec.id and t.target_defense == d.id and t.source in self.keys]
        if all(self.store.has(r) for r in rows):
            self._submit_cells(mspec, key, d.id, d.result_key, source, shared)  # counts them as stored
            return
        if reusable_defense(directory, digest):
            self._defense_ready(mspec, key, d, CheckpointBlob.from_directory(directory))
            return
        task = DefenseTask(source, self.spec.dataset(mspec.data), d, digest, self.train_runtime)
        self.executor.submit(run_defense_task, task, shared, tag=("defense", mspec, d),
                             resources=self.train_resources, priority=1)

    def _defense_ready(self, mspec: ModelSpec, key: str, d: DefenseSpec, blob: CheckpointBlob) -> None:
        source, shared = ModelSource(key), self.executor.share(blob)
        self.ready[(mspec.id, d.id)] = (source, shared)
        self._submit_cells(mspec, key, d.id, d.result_key, source, shared)
        self._submit_transfers()

    def _submit_transfers(self) -> None:
        """Each transfer group (source, attack, eps) once all its models are known: rows already
        stored are counted, the rest go in one task when the source and those targets are ready."""
        groups: dict[tuple[str, str, float], list] = {}
        for t in self.plan.transfers:
            if t.white_box is None:
                groups.setdefault((t.source, t.attack, t.eps), []).append(t)
        for (source, attack_id, eps), cells in groups.items():
            if (source, attack_id, eps) in self.transfers_sent:
                continue
            if source not in self.keys or any(t.target not in self.keys for t in cells):
                continue
            rows = [(t, cell_key(t, self.spec, self.keys, SUBSET)) for t in cells]
            todo = [(t, row) for t, row in rows if not self.store.has(row)]
            if todo and ((source, NONE) not in self.ready
                         or any((t.target, t.target_defense) not in self.ready for t, _ in todo)):
                continue
            self.transfers_sent.add((source, attack_id, eps))
            self.outcome.stored_before += len(rows) - len(todo)
            self.done_cells += len(rows) - len(todo)
            if not todo:
                continue
            src, src_shared = self.ready[(source, NONE)]
            targets = [self.ready[(t.target, t.target_defense)] for t, _ in todo]
            task = TransferTask(src, tuple((tgt[0], row) for tgt, (_, row) in zip(targets, todo, strict=True)),
                                self.spec.dataset(self.spec.model(source).data), self.spec.attack(attack_id).spec,
                                eps, self.spec.batch_size, self.eval_runtime)
            self.executor.submit(run_transfer_task, task, src_shared, *[tgt[1] for tgt in targets],
                                 tag=("transfer", task), resources=self.eval_resources)

    # -- results -----------------------------------------------------------------------------

    def _take(self, done) -> None:
        kind = done.tag[0]
        if kind == "train":
            _, mspec, key = done.tag
            if done.error is not None:
                lost = sum(c.model == mspec.id for c in self.plan.cells)
                self.outcome.failures.append(TaskFailure("train", mspec.id, done.error, lost))
                self.done_cells += lost
            else:
                self._trained(mspec, key, done.value)
            total = self._train_totals.get(mspec.id, 1)
            self._report(f"train {mspec.id}", total, total)
        elif kind == "defense":
            _, mspec, d = done.tag
            if done.error is not None:
                lost = len(self.plan.cells_of(mspec.id, d.id))
                self.outcome.failures.append(TaskFailure("defense", f"{mspec.id} {d.id}", done.error, lost))
                self.done_cells += lost
            else:
                out: DefenseOutput = done.value
                out.blob.write(self._defense_dir(mspec, d))
                self._defense_ready(mspec, out.key, d, out.blob)
        elif kind == "transfer":
            task: TransferTask = done.tag[1]
            self.done_cells += len(task.targets)
            if done.error is not None:
                self.outcome.failures.append(TaskFailure("cell", task.label, done.error, len(task.targets)))
            else:
                for row in done.value:
                    if self.store.put(row.key, row.metrics, row.per_sample):
                        self.outcome.computed += 1
            self._report(task.label, self.done_cells, self.outcome.cells)
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

        return cell_progress(live, task.label, 0, self.outcome.cells, len(eval_data(task.data)[1]), task.batch_size)

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
