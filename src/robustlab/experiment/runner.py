"""Run an experiment: plan the grid's tasks, hand them to an executor, record what comes back.

Everything lands in one run directory: ``checkpoints/<model id>/`` (safetensors + config),
``defenses/<model id>/<defense id>/`` (each defended model, built once), ``results.sqlite``
(one row per cell, keyed completely: see `ResultKey`), so a rerun skips what is done and an
interrupted run resumes where it stopped. Once every cell of a (model, defense) is back, the
binarization self-test of the attacks whose cells succeeded runs at each eps > 0 (spec
``self_test``), a row of kind "selftest" keyed as `robustlab evaluate` keys it. The tasks
(`robustlab.experiment.tasks`) run wherever the executor puts them (this process, or Ray
workers); the driver here is the only writer of the run directory, one transaction per cell
as it arrives. A failing task does not stop the grid: the others complete and the failures
are listed in the outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from robustlab.attacks.eot import is_randomized
from robustlab.core.contract import eval_mode
from robustlab.core.digest import model_digest
from robustlab.core.environment import DEFAULT_THREADS, check_threads, environment
from robustlab.core.errors import CheckpointError, ConfigError, RobustlabError
from robustlab.core.plugins import worker_plugins
from robustlab.core.runtime import pick_device
from robustlab.data import Dataset
from robustlab.evaluate.defended import defense_fit_warning
from robustlab.evaluate.runner import Cell, cell_key, cell_progress, eot_specs_for_randomized
from robustlab.evaluate.runner import plan_cells as plan_attack_cells
from robustlab.evaluate.samples import EvalSet, eval_set
from robustlab.evaluate.selftests import selftest_groups, selftest_key
from robustlab.evaluate.session import check_run_dir, clear_store
from robustlab.evaluate.summary import identification_key, probe_key, summarize
from robustlab.experiment.defenses import (
    DefenseOutput,
    DefenseTask,
    defense_digest,
    reusable_defense,
    run_defense_task,
)
from robustlab.experiment.executors import Executor, Resources, make_executor
from robustlab.experiment.plan import NONE, Plan, TransferCell, plan_experiment
from robustlab.experiment.spec import DefenseSpec, ExperimentSpec, ModelSpec
from robustlab.experiment.tasks import (
    CheckpointBlob,
    EvalOutput,
    EvalTask,
    ModelSource,
    ProbeOutput,
    ProbeTask,
    Runtime,
    SelfTestTask,
    TrainOutput,
    TrainTask,
    dataset_for,
    eval_split,
    run_eval_task,
    run_probe_task,
    run_selftest_task,
    run_train_task,
)
from robustlab.experiment.transfer import TransferTask, plan_index, run_transfer_task, transfer_key
from robustlab.models import build_model
from robustlab.selftest import BinarizationConfig
from robustlab.store.checkpoints import load_checkpoint, read_checkpoint_config
from robustlab.store.results import ResultKey, ResultStore
from robustlab.train.adversarial import recipe_label
from robustlab.train.defaults import training_warning

Progress = Callable[[str, int, int], None]
"""progress(message, done, total): called as work advances."""

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
    `computed`: written by this run; `selftests`: binarization self-test rows written by this run."""

    rows: list[dict[str, Any]]
    failures: list[TaskFailure] = field(default_factory=list)
    cells: int = 0
    stored_before: int = 0
    computed: int = 0
    trained: int = 0
    reused: int = 0
    executor: str = "local"
    selftests: int = 0

    def counts(self) -> dict[str, Any]:
        return {"cells": self.cells, "stored_before": self.stored_before, "computed": self.computed,
                "failed": sum(f.cells for f in self.failures), "trained": self.trained, "reused": self.reused,
                "executor": self.executor, "selftests": self.selftests}


class GridFailed(RobustlabError):
    """Some tasks of the grid failed (the others completed and are stored)."""

    def __init__(self, outcome: GridOutcome) -> None:
        self.outcome = outcome
        n = len(outcome.failures)
        super().__init__(f"{n} task{'s' if n != 1 else ''} failed: " + "; ".join(f.line() for f in outcome.failures))


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
    progress: Progress | None = None,
    executor: Executor | None = None,
    overwrite: bool = False,
    threads: int | None = None,
) -> list[dict[str, Any]]:
    """Run `spec` into `run_dir`; return the summary rows (see `robustlab.evaluate.summarize`).
    Raises `GridFailed` (after the rest of the grid is done and stored) when a task failed.
    ``overwrite`` deletes the run directory's earlier results first (see `run_grid`)."""
    outcome = run_grid(spec, run_dir, device=device, progress=progress, executor=executor, overwrite=overwrite,
                       threads=threads)
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
    threads: int | None = None,
    command: str | None = None,
) -> GridOutcome:
    """Run `spec` into `run_dir` on `executor` (default: the one `spec.executor` names, closed
    at the end); cells already stored are skipped. Failed tasks are listed, never raised.

    Everything is checked before anything is trained or written: every attack at every eps,
    each data set and its evaluated samples, every model config, and the run directory (not a
    file, not a foreign or older database, not a non-empty folder of something else, writable;
    ``overwrite`` deletes its earlier results). Rows are keyed completely (see `ResultKey`).

    Tasks run in this process (the local executor) at ``threads`` torch intra-op threads
    (default `DEFAULT_THREADS`), Ray tasks at the CPUs they ask for, never at whatever the
    machine has: rows do not change with its core count. The store's meta "environment"
    records it, with versions, commit, device, data digests and ``command`` (the line that
    reproduces the run)."""
    run_dir = Path(run_dir)
    threads = check_threads(threads)
    plan = plan_experiment(spec)
    cells = plan_cells(spec)
    samples: dict[str, EvalSet] = {}
    for dspec in spec.datasets:
        samples[dspec.key] = eval_set(dataset_for(dspec), dspec.n_eval, dspec.seed)
    for i, mspec in enumerate(spec.models):  # bad model configs fail here, before any training
        data = dataset_for(spec.dataset(mspec.data))
        try:
            build_model(mspec.model_config(data.num_classes, data.input_shape))
        except (ConfigError, TypeError, ValueError, ArithmeticError, RuntimeError, MemoryError) as exc:
            raise ConfigError(f"models[{i}] ({mspec.id}): {' '.join(str(exc).split())}") from None
    state = check_run_dir(run_dir, overwrite=overwrite, allow=("checkpoints", "defenses"))
    own = executor is None
    executor = executor or make_executor(spec.executor, debug=debug)  # before anything is written
    try:
        if state == "replace":
            clear_store(run_dir)
        with ResultStore(run_dir) as store:
            store.set_meta("experiment", spec.to_dict())
            store.update_meta("evaluation_sets", {s.digest: s.describe() for s in samples.values()})
            store.set_meta("datasets", {k: s.describe() for k, s in samples.items()})
            if len(samples) == 1:
                store.set_meta("data", next(iter(samples.values())).describe())
            driver = _Driver(spec, run_dir, store, executor, plan, cells, samples, device, progress, threads)
            first = next(iter(samples.values())).describe()
            store.set_meta("environment", environment(
                device or pick_device(None), driver.eval_runtime.threads or threads, first,
                train_threads=driver.train_runtime.threads or threads, executor=executor.name,
                datasets={k: {"name": d["name"], "version": d["version"], "samples": d["samples"]}
                          for k, d in ((k, s.describe()) for k, s in samples.items())}, command=command))
            return driver.run()
    finally:
        if own:
            executor.close()


class _Driver:
    """One run of the grid: submits tasks as their inputs are ready, writes what comes back.

    A model's cells (and its defenses' builds) are submitted when it is trained or reused; a
    defense's cells when it is built or reused; a transfer group (source, attack, eps) when
    its source and every target are ready. Every row key names the weights it was computed on:
    the model's, or the defended model's (`digests`)."""

    def __init__(self, spec: ExperimentSpec, run_dir: Path, store: ResultStore, executor: Executor,
                 plan: Plan, cells: dict[tuple[str, float | None], Cell], samples: dict[str, EvalSet],
                 device: str | None, progress: Progress | None, threads: int = DEFAULT_THREADS) -> None:
        self.spec, self.run_dir, self.store, self.executor = spec, run_dir, store, executor
        self.plan, self.cells, self.samples, self.progress = plan, cells, samples, progress
        ex = spec.executor
        remote = executor.name != "local"
        self.eval_resources = Resources(ex.num_cpus, ex.num_gpus)
        self.train_resources = Resources(
            ex.num_cpus if ex.train_cpus is None else ex.train_cpus,
            ex.num_gpus if ex.train_gpus is None else ex.train_gpus,
        )

        def pinned(cpus: float) -> int:  # a Ray task gets as many torch threads as CPUs it asked for
            return max(1, int(cpus)) if remote else threads

        plugins = worker_plugins(spec.plugins)  # the file's and the command line's (--plugin)
        self.eval_runtime = Runtime(device, pinned(self.eval_resources.num_cpus), plugins)
        self.train_runtime = Runtime(device, pinned(self.train_resources.num_cpus), plugins)
        self.storage = Path(ex.storage) / spec.name if ex.storage else None
        self.models_meta: dict[str, Any] = {}
        counts = plan.counts()
        self.outcome = GridOutcome(rows=[], cells=counts["cells"] + counts["transfer"], executor=executor.name)
        self.done_cells = 0
        self.keys: dict[str, str] = {}  # model id -> model key (id:spec digest)
        self.digests: dict[tuple[str, str], str] = {}  # (model id, defense id) -> weights digest
        self.randomized: set[tuple[str, str]] = set()  # (model id, defense id) attacked with EOT
        self.eot_cells: dict[tuple[str, float | None], Cell] = {}
        self.ready: dict[tuple[str, str], tuple[ModelSource, Any]] = {}  # (model, defense) -> (source, blob)
        self.transfers_sent: set[tuple[str, str, float]] = set()
        self.submitted: set[ResultKey] = set()  # two attack ids with one resolved spec and eps fill one row
        self.waiting: dict[tuple[str, str], set[ResultKey]] = {}  # (model, defense) -> its cells not back yet
        self.failed_rows: set[ResultKey] = set()  # cells whose task failed (their attack is not self-tested)
        self._train_totals: dict[str, int] = {}  # optimizer steps of each model (heard in-process)
        self.config = BinarizationConfig()

    # -- keys --------------------------------------------------------------------------------

    def _samples(self, model_id: str) -> EvalSet:
        return self.samples[self.spec.dataset(self.spec.model(model_id).data).key]

    def _defense_label(self, defense_id: str) -> str:
        return NONE if defense_id == NONE else self.spec.defense(defense_id).result_key

    def cell(self, model_id: str, defense_id: str, attack_id: str, eps: float | None) -> Cell:
        """The planned cell, with ``eot=DEFAULT_EOT`` when (model, defense) is randomized and the
        attack sets no ``eot`` itself (as `evaluate_grid` does: the parameter is in the key)."""
        cell = self.cells[(attack_id, eps)]
        if (model_id, defense_id) not in self.randomized:
            return cell
        (spec,) = eot_specs_for_randomized([cell.spec])
        if spec is cell.spec:
            return cell
        if (spec.key(), eps) not in self.eot_cells:
            self.eot_cells[(spec.key(), eps)] = plan_attack_cells([spec], [] if eps is None else [eps])[0]
        return self.eot_cells[(spec.key(), eps)]

    def _ready_model(self, model_id: str, defense_id: str, model: torch.nn.Module) -> None:
        """Record the weights digest of (model, defense) and whether it is randomized."""
        self.digests[(model_id, defense_id)] = model_digest(model)
        x = self._samples(model_id).x[:8]
        with eval_mode(model):
            if is_randomized(model, x.to(next(model.parameters()).device)):
                self.randomized.add((model_id, defense_id))

    def row_key(self, model_id: str, defense_id: str, attack_id: str, eps: float | None) -> ResultKey | None:
        """The row of a white-box cell (None while its model or defended model is not ready)."""
        digest = self.digests.get((model_id, defense_id))
        if digest is None:
            return None
        return cell_key(self.cell(model_id, defense_id, attack_id, eps), self.keys[model_id], digest,
                        self._samples(model_id),
                        self._defense_label(defense_id), self.spec.batch_size)

    def transfer_row_key(self, t: TransferCell) -> ResultKey | None:
        """The row of a transfer cell: the white-box row on the diagonal, else the target's
        transfer row (None while the source or the target is not ready)."""
        if t.white_box is not None:
            return self.row_key(t.target, NONE, t.attack, t.eps)
        source = self.digests.get((t.source, NONE))
        target = self.row_key(t.target, t.target_defense, t.attack, t.eps)
        if source is None or target is None:
            return None
        return transfer_key(target, self.cell(t.source, NONE, t.attack, t.eps), self.keys[t.source], source)

    def _publish_index(self) -> None:
        self.store.set_meta("index", plan_index(self.spec, self.plan, self.keys, self.row_key,
                                                self.transfer_row_key, self.samples))

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
        self.outcome.rows = [
            row for d in self.spec.datasets for row in summarize(
                self.store, models=[k for k, m in self.models_meta.items() if self.spec.dataset(m["data"]) == d],
                samples=self.samples[d.key].digest)
        ]
        return self.outcome

    def _checkpoint_dir(self, mspec: ModelSpec, digest: str) -> Path:
        if self.storage is not None:
            return self.storage / f"{mspec.id}-{digest}"
        return self.run_dir / "checkpoints" / mspec.id

    def _model_ready(self, mspec: ModelSpec, key: str, directory: Path, blob: CheckpointBlob | None) -> None:
        """Record the model, then submit its probe, every cell not yet stored and its defenses."""
        doc = read_checkpoint_config(directory)
        meta = doc["metadata"]
        data = dataset_for(self.spec.dataset(mspec.data))
        self.models_meta[key] = {
            "id": mspec.id,
            "data": mspec.data,
            "config": doc["model"],
            "train": meta.get("train", mspec.train.to_dict()),
            "swept": [list(p) for p in mspec.swept],
            "checkpoint": str(directory),
            "clean_accuracy": meta["clean_accuracy"],
            "n_test": len(data.y_test),  # the clean accuracy's sample count (its interval)
            "train_seconds": meta["seconds"],
            "training": recipe_label(mspec.train.to_dict()),
            "warning": training_warning(meta["clean_accuracy"], data.num_classes, data.name),
            "history": meta["history"],
        }
        self.store.update_meta("models", {key: self.models_meta[key]})
        self.keys[mspec.id] = key
        self._ready_model(mspec.id, NONE, blob.load() if blob is not None else load_checkpoint(directory))
        self._publish_index()
        source = ModelSource(key, None if blob is not None else str(directory))
        shared = self.executor.share(blob) if blob is not None else None
        self.ready[(mspec.id, NONE)] = (source, shared)
        self._submit_cells(mspec, NONE, source, shared)
        for d in self.spec.defenses_for(mspec):
            self._defense(mspec, key, d, source, shared)
        self._submit_transfers()

    def _submit_cells(self, mspec: ModelSpec, defense_id: str, source: ModelSource, shared: Any) -> None:
        """The probe of (model, defense) and every planned cell of it not yet stored."""
        if not (self.store.has(self._probe_key(mspec.id, defense_id))
                and self.store.has(self._identification_key(mspec.id, defense_id))):
            probe = ProbeTask(source, self.spec.dataset(mspec.data), self.spec.eps_grid, self.eval_runtime)
            self.executor.submit(run_probe_task, probe, shared, tag=("probe", probe, mspec.id, defense_id),
                                 resources=self.eval_resources)
        waiting = self.waiting.setdefault((mspec.id, defense_id), set())
        for c in self.plan.cells_of(mspec.id, defense_id):
            row = self.row_key(mspec.id, defense_id, c.attack, c.eps)
            assert row is not None  # the model (behind the defense) is ready
            if self.store.has(row) or row in self.submitted:
                self.outcome.stored_before += 1
                self.done_cells += 1
                continue
            self.submitted.add(row)
            waiting.add(row)
            cell = self.cell(mspec.id, defense_id, c.attack, c.eps)
            task = EvalTask(row, source, self.spec.dataset(mspec.data), cell.spec, cell.eps, self.spec.batch_size,
                            self.eval_runtime)
            self.executor.submit(run_eval_task, task, shared, tag=("cell", task, (mspec.id, defense_id)),
                                 resources=self.eval_resources, progress=self._cell_progress(task))
        if not waiting:
            self._submit_selftests(mspec.id, defense_id)

    def _submit_selftests(self, model_id: str, defense_id: str) -> None:
        """The binarization self-test of (model, defense) at each eps > 0 not yet stored: the
        attacks of its cells that succeeded (EOT included), on the first `spec.self_test` images."""
        samples = self._samples(model_id)
        n = min(self.spec.self_test, len(samples))
        if n < 1:
            return
        cells = []
        for c in self.plan.cells_of(model_id, defense_id):
            if self.row_key(model_id, defense_id, c.attack, c.eps) not in self.failed_rows:
                cells.append(self.cell(model_id, defense_id, c.attack, c.eps))
        source, shared = self.ready[(model_id, defense_id)]
        for eps, group in selftest_groups(cells):
            key = selftest_key(group, eps, self.keys[model_id], self.digests[(model_id, defense_id)], samples,
                               self._defense_label(defense_id), n, self.config)
            if self.store.has(key):
                continue
            task = SelfTestTask(key, source, self.spec.dataset(self.spec.model(model_id).data),
                                tuple(c.spec for c in group), eps, n, self.eval_runtime, self.config)
            self._report(task.label, self.done_cells, self.outcome.cells)
            self.executor.submit(run_selftest_task, task, shared, tag=("selftest", task),
                                 resources=self.eval_resources)

    def _defense_dir(self, mspec: ModelSpec, d: DefenseSpec) -> Path:
        return self.run_dir / "defenses" / mspec.id / d.id

    def _defense(self, mspec: ModelSpec, key: str, d: DefenseSpec, source: ModelSource, shared: Any) -> None:
        """Reuse the cached defended model when it was built from this model and spec, else build it."""
        directory = self._defense_dir(mspec, d)
        digest = defense_digest(key, d)
        if reusable_defense(directory, digest):
            self._defense_ready(mspec, d, directory, CheckpointBlob.from_directory(directory))
            return
        task = DefenseTask(source, self.spec.dataset(mspec.data), d, digest, self.train_runtime)
        self.executor.submit(run_defense_task, task, shared, tag=("defense", mspec, d),
                             resources=self.train_resources, priority=1)

    def _defense_ready(self, mspec: ModelSpec, d: DefenseSpec, directory: Path, blob: CheckpointBlob) -> None:
        """Record the defended model (its clean accuracy, a warning when the defense did not fit),
        then submit its probe, its cells and the transfers it completes."""
        meta = read_checkpoint_config(directory)["metadata"]
        key = self.keys[mspec.id]
        base_accuracy = self.models_meta[key]["clean_accuracy"]  # measured on the same test split
        num_classes = dataset_for(self.spec.dataset(mspec.data)).num_classes
        self.store.update_meta("defenses", {f"{mspec.id}/{d.id}": {
            "id": f"{mspec.id} + {d.id}", "model": key, "defense": d.result_key,
            "clean_accuracy": meta.get("clean_accuracy"), "base_clean_accuracy": base_accuracy,
            "seconds": meta.get("seconds"),
            "warning": defense_fit_warning(meta.get("clean_accuracy"), base_accuracy, num_classes),
        }})
        self._ready_model(mspec.id, d.id, blob.load())
        source, shared = ModelSource(key), self.executor.share(blob)
        self.ready[(mspec.id, d.id)] = (source, shared)
        self._publish_index()
        self._submit_cells(mspec, d.id, source, shared)
        self._submit_transfers()

    def _submit_transfers(self) -> None:
        """Each transfer group (source, attack, eps) once all its models are ready: rows already
        stored are counted, the rest go in one task (one attack run on the source)."""
        groups: dict[tuple[str, str, float], list[TransferCell]] = {}
        for t in self.plan.transfers:
            if t.white_box is None:
                groups.setdefault((t.source, t.attack, t.eps), []).append(t)
        for (source, attack_id, eps), group in groups.items():
            if (source, attack_id, eps) in self.transfers_sent:
                continue
            keyed = [(t, self.transfer_row_key(t)) for t in group]
            if any(row is None for _, row in keyed):
                continue
            self.transfers_sent.add((source, attack_id, eps))
            todo = [(t, row) for t, row in keyed if not self.store.has(row)]  # type: ignore[arg-type]
            self.outcome.stored_before += len(keyed) - len(todo)
            self.done_cells += len(keyed) - len(todo)
            if not todo:
                continue
            src, src_shared = self.ready[(source, NONE)]
            targets = [self.ready[(t.target, t.target_defense)] for t, _ in todo]
            cell = self.cell(source, NONE, attack_id, eps)
            task = TransferTask(src, tuple((tgt[0], row) for tgt, (_, row) in zip(targets, todo, strict=True)),
                                self.spec.dataset(self.spec.model(source).data), cell.spec, eps,
                                self.spec.batch_size, self.eval_runtime)
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
                self._defense_ready(mspec, d, out.blob.write(self._defense_dir(mspec, d)), out.blob)
        elif kind == "transfer":
            transfer: TransferTask = done.tag[1]
            self.done_cells += len(transfer.targets)
            if done.error is not None:
                self.outcome.failures.append(TaskFailure("cell", transfer.label, done.error, len(transfer.targets)))
            else:
                for row in done.value:
                    if self.store.put(row.key, row.metrics, row.per_sample):
                        self.outcome.computed += 1
            self._report(transfer.label, self.done_cells, self.outcome.cells)
        elif kind == "probe":
            _, probe, model_id, defense_id = done.tag
            if done.error is not None:
                self.outcome.failures.append(TaskFailure("probe", probe.model.key.split(":")[0], done.error))
            else:
                self._probed(done.value, model_id, defense_id)
        elif kind == "selftest":
            test: SelfTestTask = done.tag[1]
            if done.error is not None:
                self.outcome.failures.append(TaskFailure("selftest", test.label, done.error))
            elif self.store.put(done.value.key, done.value.metrics, done.value.per_sample):
                self.outcome.selftests += 1
        else:
            _, cell, owner = done.tag  # cell: EvalTask; owner: (model, defense)
            self.done_cells += 1
            if done.error is not None:
                self.outcome.failures.append(TaskFailure("cell", cell.label, done.error, 1))
                self.failed_rows.add(cell.key)
            else:
                evaluated: EvalOutput = done.value
                if self.store.put(evaluated.key, evaluated.metrics, evaluated.per_sample):
                    self.outcome.computed += 1
            self._report(cell.label, self.done_cells, self.outcome.cells)
            self.waiting[owner].discard(cell.key)
            if not self.waiting[owner]:
                self._submit_selftests(*owner)

    def _trained(self, mspec: ModelSpec, key: str, out: TrainOutput) -> None:
        self.outcome.trained += 1
        if out.blob is not None:
            directory = out.blob.write(self._checkpoint_dir(mspec, key.split(":")[1]))
        else:
            directory = Path(out.path)  # type: ignore[arg-type]
        self._model_ready(mspec, key, directory, out.blob)

    def _probe_key(self, model_id: str, defense_id: str) -> ResultKey:
        return probe_key(self.keys[model_id], self.digests[(model_id, defense_id)], self._samples(model_id),
                         self._defense_label(defense_id))

    def _identification_key(self, model_id: str, defense_id: str) -> ResultKey:
        return identification_key(self.keys[model_id], self.digests[(model_id, defense_id)],
                                  self._samples(model_id), list(self.spec.eps_grid), self._defense_label(defense_id),
                                  self.spec.batch_size)

    def _probed(self, out: ProbeOutput, model_id: str, defense_id: str) -> None:
        self.store.put(self._probe_key(model_id, defense_id), out.probe)
        self.store.put(self._identification_key(model_id, defense_id), out.identification)

    def _cell_progress(self, task: EvalTask) -> Callable[[str, int, int, int], None] | None:
        """Progress inside a cell (heard where the executor runs the cell in this process)."""
        if self.progress is None:
            return None

        def live(message: str, _cell: int, total: int) -> None:
            self._report(message, self.done_cells, total)

        n_eval = len(self.samples[task.data.key])
        return cell_progress(live, task.label, 0, self.outcome.cells, n_eval, task.batch_size)

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
