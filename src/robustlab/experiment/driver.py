"""The driver of one run of the grid: it submits the tasks as their inputs are ready and is the
only writer of the run directory, one transaction per cell as it arrives.

Everything lands in one run directory: ``checkpoints/<model id>/`` (safetensors + config),
``defenses/<model id>/<defense id>/`` (each defended model, built once), ``results.sqlite``
(one row per cell, keyed completely: see `ResultKey`), so a rerun skips what is done and an
interrupted run resumes where it stopped. Once every cell of a (model, defense) is back, the
binarization self-test of the attacks whose cells succeeded runs at each eps > 0 (spec
``self_test``), a row of kind "selftest" keyed as `robustlab evaluate` keys it. The tasks
(`robustlab.experiment.tasks`) run wherever the executor puts them (this process, or Ray
workers). A failing task does not stop the grid: the others complete and the failures are
listed in the outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from robustlab.attacks.eot import is_randomized
from robustlab.core.contract import RobustModel, eval_mode
from robustlab.core.digest import label_name, model_digest, model_label
from robustlab.core.environment import DEFAULT_THREADS
from robustlab.core.plugins import worker_plugins
from robustlab.data.spec import DataSpec
from robustlab.evaluate.defended import defense_fit_warning
from robustlab.evaluate.runner import Cell, cell_key, cell_progress, eot_specs_for_randomized
from robustlab.evaluate.runner import plan_cells as plan_attack_cells
from robustlab.evaluate.samples import EvalSet
from robustlab.evaluate.selftests import selftest_groups, selftest_key
from robustlab.evaluate.summary import identification_key, probe_key, summarize
from robustlab.experiment.defenses import (
    DefenseOutput,
    DefenseTask,
    defense_digest,
    reusable_defense,
    run_defense_task,
)
from robustlab.experiment.executors import Executor, Resources
from robustlab.experiment.outcome import GridOutcome, TaskFailure
from robustlab.experiment.plan import NONE, Plan, TransferCell
from robustlab.experiment.reuse import checkpoint_entry, reusable_checkpoint
from robustlab.experiment.spec import ExperimentSpec
from robustlab.experiment.spec_parts import DefenseSpec, ModelSpec
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
    run_eval_task,
    run_probe_task,
    run_selftest_task,
    run_train_task,
)
from robustlab.experiment.transfer import TransferTask, plan_index, run_transfer_task, transfer_key
from robustlab.selftest import BinarizationConfig
from robustlab.store.checkpoints import load_checkpoint, read_checkpoint_config
from robustlab.store.results import ResultKey, ResultStore
from robustlab.train.adversarial import recipe_label
from robustlab.train.defaults import training_warning

Progress = Callable[[str, int, int], None]
"""progress(message, done, total): called as work advances."""


class Driver:
    """One run of the grid: submits tasks as their inputs are ready, writes what comes back.

    A model's cells (and its defenses' builds) are submitted when it is trained or reused; a
    defense's cells when it is built or reused; a transfer group (source, attack, eps) when
    its source and every target are ready. Every row key names the weights it was computed on:
    the model's, or the defended model's (`digests`), under the label of what was evaluated
    (`labels`): a defended model, however it was built, is its own model."""

    def __init__(self, spec: ExperimentSpec, run_dir: Path, store: ResultStore, executor: Executor,
                 plan: Plan, cells: dict[tuple[str, float | None], Cell], samples: dict[str, EvalSet],
                 device: str | None, progress: Progress | None, threads: int = DEFAULT_THREADS,
                 given: dict[str, RobustModel] | None = None, chosen_samples: bool = False,
                 index: bool = True) -> None:
        self.spec, self.run_dir, self.store, self.executor = spec, run_dir, store, executor
        self.given = dict(given or {})  # model id -> the given model, loaded once by `run_grid`
        self.chosen_samples = chosen_samples  # tasks get the samples themselves, not a data spec
        self.index = index  # publish the plan's index (experiments; not a one-model evaluation)
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
        self.keys: dict[str, str] = {}  # model id -> model key (`model_label`: id and weights digest)
        self.shown: dict[tuple[str, str], str] = {}  # (model id, defense id) -> its `defense_label`
        self.digests: dict[tuple[str, str], str] = {}  # (model id, defense id) -> weights digest
        self.labels: dict[tuple[str, str], str] = {}  # (model id, defense id) -> its model key
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

    def _task_data(self, model_id: str) -> DataSpec | EvalSet:
        """What a task of `model_id` evaluates on: its data spec, or the samples the caller chose."""
        if self.chosen_samples:
            return self._samples(model_id)
        return self.spec.dataset(self.spec.model(model_id).data)

    def _defense_label(self, model_id: str, defense_id: str) -> str:
        """The defense part of a row key: "none", or the defended model's `defense_label`
        (a given defended checkpoint's, or the one the axis built)."""
        return self.shown.get((model_id, defense_id), NONE)

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

    def _ready_model(self, model_id: str, defense_id: str, model: RobustModel, digest: str, key: str) -> None:
        """Record the key and weights digest of (model, defense) and whether it is randomized."""
        self.digests[(model_id, defense_id)] = digest
        self.labels[(model_id, defense_id)] = key
        x = self._samples(model_id).x[:8]
        with eval_mode(model):
            if is_randomized(model, x.to(next(model.parameters()).device)):
                self.randomized.add((model_id, defense_id))

    def row_key(self, model_id: str, defense_id: str, attack_id: str, eps: float | None) -> ResultKey | None:
        """The row of a white-box cell (None while its model or defended model is not ready)."""
        digest = self.digests.get((model_id, defense_id))
        if digest is None:
            return None
        return cell_key(self.cell(model_id, defense_id, attack_id, eps), self.labels[(model_id, defense_id)], digest,
                        self._samples(model_id),
                        self._defense_label(model_id, defense_id), self.spec.batch_size)

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
        if not self.index:
            return
        self.store.set_meta("index", plan_index(self.spec, self.plan, self.keys, self.row_key,
                                                self.transfer_row_key, self.samples))

    # -- planning ----------------------------------------------------------------------------

    def run(self) -> GridOutcome:
        for mspec in self.spec.models:
            if mspec.given is not None:
                self._given_ready(mspec)
                continue
            dspec = self.spec.dataset(mspec.data)
            data = dataset_for(dspec)
            # the training defaults left open (None) are filled for this data set's size and head
            mspec = replace(mspec, train=mspec.train.resolved(len(data.y_train), mspec.model.get("head", "softmax")))
            digest = mspec.digest(dspec, data.num_classes, data.input_shape)
            directory = self._checkpoint_dir(mspec, digest)
            if reusable_checkpoint(directory, digest):
                self.outcome.reused += 1
                blob = None if self.storage else CheckpointBlob.from_directory(directory)
                self._model_ready(mspec, directory, blob)
            else:
                task = TrainTask(mspec, dspec, digest, self.train_runtime,
                                 str(self.storage) if self.storage else None)
                self._report(f"train {mspec.id}", 0, 1)
                self.executor.submit(
                    run_train_task, task, tag=("train", mspec, digest), resources=self.train_resources, priority=1,
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

    def _model_ready(self, mspec: ModelSpec, directory: Path, blob: CheckpointBlob | None) -> None:
        """Record a model this run trained (or reused), then submit its work (`_ready`)."""
        doc = read_checkpoint_config(directory)
        meta = doc["metadata"]
        data = dataset_for(self.spec.dataset(mspec.data))
        entry = {
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
        model = blob.load() if blob is not None else load_checkpoint(directory)
        self._ready(mspec, entry, model, None if blob is not None else str(directory), blob)

    def _given_ready(self, mspec: ModelSpec) -> None:
        """Record a given model (a checkpoint, zoo or factory weights, an object: evaluated as it
        is), then submit its work (`_ready`)."""
        given = mspec.given
        assert given is not None
        model = self.given[mspec.id]
        entry: dict[str, Any] = {"id": mspec.id, "data": mspec.data, "given": given.to_dict(), **given.info}
        shareable: CheckpointBlob | RobustModel = model
        name = mspec.id
        if given.kind == "checkpoint":
            directory = Path(str(given.path))
            doc = read_checkpoint_config(directory)
            meta = doc.get("metadata") or {}
            entry.update(checkpoint_entry(doc, directory))
            if doc.get("defense"):  # named by its content, as `run`'s defenses: axis names it
                self.shown[(mspec.id, NONE)] = name = entry["defense_label"]
                if entry.get("warning") is None:  # the defense-fit warning, on every path
                    entry["warning"] = defense_fit_warning(meta.get("clean_accuracy"),
                                                           meta.get("base_clean_accuracy"), model.num_classes)
            elif meta.get("clean_accuracy") is not None:  # the training warning `run` gives its own models
                entry["warning"] = training_warning(meta["clean_accuracy"], model.num_classes,
                                                    self._samples(mspec.id).name)
            if self.executor.name != "local":  # workers elsewhere load the checkpoint's bytes themselves
                shareable = CheckpointBlob.from_directory(directory)
        elif given.defense != NONE:
            self.shown[(mspec.id, NONE)] = given.defense
        self._ready(mspec, entry, model, None, shareable, given.key, name)

    def _record(self, key: str, entry: dict[str, Any], merge: bool) -> None:
        """Write the store's meta "models" entry of `key`; `merge`: keep what an earlier record
        of the same model (by `run` or `evaluate`) holds and this one does not."""
        env = self.store.get_meta("environment") or {}  # where and by which command it was evaluated
        entry = {**entry, "environment": env, "command": env.get("command")}
        if merge:
            known = (self.store.get_meta("models", {}) or {}).get(key, {})
            entry = {**known, **{k: v for k, v in entry.items() if v is not None or k not in known}}
        self.models_meta[key] = entry
        self.store.update_meta("models", {key: entry})

    def _ready(self, mspec: ModelSpec, entry: dict[str, Any], model: RobustModel, path: str | None,
               shareable: CheckpointBlob | RobustModel | None, key: str | None = None,
               name: str | None = None) -> None:
        """Label the model by its weights digest (computed here, once) under `name` (default: its
        id), record it, then submit its probe, every cell not yet stored, its defenses and the
        transfers it completes."""
        digest = model_digest(model)
        key = key or model_label(name or mspec.id, digest)
        self._record(key, entry, merge=mspec.given is not None)
        self.keys[mspec.id] = self.outcome.keys[mspec.id] = key
        self.outcome.samples[mspec.id] = self._samples(mspec.id).digest
        self._ready_model(mspec.id, NONE, model, digest, key)
        self._publish_index()
        source = ModelSource(key, path)
        shared = self.executor.share(shareable) if shareable is not None else None
        self.ready[(mspec.id, NONE)] = (source, shared)
        self._submit_cells(mspec, NONE, source, shared)
        for d in self.spec.defenses_for(mspec):
            self._defense(mspec, key, d, source, shared)
        self._submit_transfers()

    def _submit_cells(self, mspec: ModelSpec, defense_id: str, source: ModelSource, shared: Any) -> None:
        """The probe of (model, defense) and every planned cell of it not yet stored."""
        if not (self.store.has(self._probe_key(mspec.id, defense_id))
                and self.store.has(self._identification_key(mspec.id, defense_id))):
            probe = ProbeTask(source, self._task_data(mspec.id), self.spec.eps_grid, self.eval_runtime)
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
            task = EvalTask(row, source, self._task_data(mspec.id), cell.spec, cell.eps, self.spec.batch_size,
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
            key = selftest_key(group, eps, self.labels[(model_id, defense_id)], self.digests[(model_id, defense_id)],
                               samples, self._defense_label(model_id, defense_id), n, self.config)
            if self.store.has(key):
                continue
            task = SelfTestTask(key, source, self._task_data(model_id),
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
        """Record the defended model as a model of its own, labelled by its content as a defended
        checkpoint given to `evaluate` is (`model_label(defense_label, model_digest)`), linked to
        its base (its clean accuracy beside the base's, a warning when the defense did not fit),
        then submit its probe, its cells and the transfers it completes."""
        doc = read_checkpoint_config(directory)
        meta = doc["metadata"]
        base_key = self.keys[mspec.id]
        base_accuracy = self.models_meta[base_key]["clean_accuracy"]  # measured on the same test split
        data = dataset_for(self.spec.dataset(mspec.data))
        defended = blob.load()
        digest = model_digest(defended)
        entry = checkpoint_entry(doc, directory)  # as a defended checkpoint given to `evaluate` is recorded
        shown = self.shown[(mspec.id, d.id)] = entry["defense_label"]
        key = model_label(shown, digest)
        self._record(key, {
            **entry, "id": f"{mspec.id} + {d.id}", "data": mspec.data, "base": base_key,
            "n_test": len(data.y_test), "base_clean_accuracy": base_accuracy, "train_seconds": meta.get("seconds"),
            "warning": defense_fit_warning(meta.get("clean_accuracy"), base_accuracy, data.num_classes),
        }, merge=True)
        self.store.update_meta("defenses", {f"{mspec.id}/{d.id}": {"model": key, "defense": shown, "base": base_key}})
        self._ready_model(mspec.id, d.id, defended, digest, key)
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
            _, mspec, digest = done.tag
            if done.error is not None:
                lost = sum(c.model == mspec.id for c in self.plan.cells)
                self.outcome.failures.append(TaskFailure("train", mspec.id, done.error, lost))
                self.done_cells += lost
            else:
                self._trained(mspec, digest, done.value)
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
                self.outcome.failures.append(TaskFailure("probe", label_name(probe.model.key), done.error))
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

    def _trained(self, mspec: ModelSpec, digest: str, out: TrainOutput) -> None:
        """`digest`: the model's spec digest (`ModelSpec.digest`), which names its checkpoint."""
        self.outcome.trained += 1
        written = out.blob.write(self._checkpoint_dir(mspec, digest)) if out.blob is not None else None
        directory = written or Path(str(out.path))
        self._model_ready(mspec, directory, out.blob)

    def _probe_key(self, model_id: str, defense_id: str) -> ResultKey:
        return probe_key(self.labels[(model_id, defense_id)], self.digests[(model_id, defense_id)],
                         self._samples(model_id),
                         self._defense_label(model_id, defense_id))

    def _identification_key(self, model_id: str, defense_id: str) -> ResultKey:
        return identification_key(self.labels[(model_id, defense_id)], self.digests[(model_id, defense_id)],
                                  self._samples(model_id), list(self.spec.eps_grid),
                                  self._defense_label(model_id, defense_id),
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

        n_eval = len(task.data) if isinstance(task.data, EvalSet) else len(self.samples[task.data.key])
        return cell_progress(live, task.label, 0, self.outcome.cells, n_eval, task.batch_size)

    def _train_step(self, name: str, step: int, total: int) -> None:
        self._train_totals[name] = total
        self._report(f"train {name}", step, total)

    def _report(self, message: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(message, done, total)
