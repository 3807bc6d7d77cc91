"""The units of work of an experiment, as plain data, and pure functions that do them.

A grid is a set of tasks: one `TrainTask` per model to train, one `ProbeTask` per model
(gradient probe + identification metrics), one `EvalTask` per (model, defense, attack,
eps) cell, one `SelfTestTask` per (model, defense, eps > 0) (the binarization test of the
cells' attacks). The `run_*_task` functions need no results store and no driver state: an
executor (in-process, or a Ray worker on another machine) runs them and hands the
outputs back to the driver, which alone writes the run directory.

A trained model travels as a `CheckpointBlob`: the two files of a robustlab checkpoint
(``config.json`` + the weights file it names) as bytes, loaded through `load_checkpoint` with
all of its checks (never a pickle). With shared storage the task names a checkpoint
directory instead and the bytes do not travel.

Each process keeps the last few data sets and models it loaded, so a worker that runs
many cells of the same model loads it once.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from robustlab.core.contract import RobustModel, batched_predict
from robustlab.core.plugins import import_plugins, load_entry_points
from robustlab.core.runtime import pick_device, seeded
from robustlab.data import Dataset, load_dataset
from robustlab.data.spec import DataSpec
from robustlab.evaluate.runner import AttackSpec, evaluate_cell
from robustlab.evaluate.samples import EvalSet, eval_set
from robustlab.evaluate.selftests import selftest_row
from robustlab.evaluate.summary import identification_for, probe_for
from robustlab.experiment.spec_parts import ModelSpec
from robustlab.models import build_model
from robustlab.selftest import BinarizationConfig
from robustlab.store.checkpoints import CONFIG, WEIGHTS, load_checkpoint, save_checkpoint, weights_file
from robustlab.store.results import ResultKey
from robustlab.train.trainer import train

StepProgress = Callable[[int, int], None]
"""progress(step, total) during training (only where the executor runs the task in-process)."""
AttackProgress = Callable[[str, int, int, int], None]
"""progress(member, done, total, standing) inside a cell (likewise)."""


@dataclass(frozen=True)
class Runtime:
    """Where and how a task runs. `device`: None picks CUDA when the worker has it. `threads`:
    torch intra-op threads for the task (None leaves the process setting). `plugins`: modules
    imported first, after the installed entry points (they register user attacks, heads or
    defenses on the worker)."""

    device: str | None = None
    threads: int | None = None
    plugins: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckpointBlob:
    """A checkpoint as bytes: its ``config.json`` and ``model.safetensors`` exactly as on disk.
    `digest`: sha256 of both (names the model in the per-process cache)."""

    config: bytes
    weights: bytes
    digest: str

    @property
    def weights_name(self) -> str:
        """The weights file's name, as the config names it (older checkpoints: model.safetensors)."""
        try:
            entry = json.loads(self.config).get("weights")
        except (ValueError, AttributeError):
            entry = None
        return entry["file"] if isinstance(entry, dict) and isinstance(entry.get("file"), str) else WEIGHTS

    @classmethod
    def from_files(cls, config: bytes, weights: bytes) -> CheckpointBlob:
        return cls(config, weights, hashlib.sha256(config + b"\0" + weights).hexdigest())

    @classmethod
    def from_directory(cls, directory: str | Path) -> CheckpointBlob:
        directory = Path(directory)
        return cls.from_files((directory / CONFIG).read_bytes(), weights_file(directory).read_bytes())

    def write(self, directory: str | Path) -> Path:
        """Publish the checkpoint at `directory` (replacing what is there) in one rename."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        (staging / Path(self.weights_name).name).write_bytes(self.weights)
        (staging / CONFIG).write_bytes(self.config)
        old = None
        if directory.exists():
            old = directory.parent / f"{staging.name}.old"
            directory.rename(old)
        staging.rename(directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return directory

    def metadata(self) -> dict[str, Any]:
        return json.loads(self.config).get("metadata") or {}

    def load(self, device: str | torch.device = "cpu") -> RobustModel:
        """The model, through `load_checkpoint` (format, digest and shape checks; no pickle)."""
        with tempfile.TemporaryDirectory(prefix="robustlab-ckpt-") as tmp:
            (Path(tmp) / Path(self.weights_name).name).write_bytes(self.weights)
            (Path(tmp) / CONFIG).write_bytes(self.config)
            return load_checkpoint(tmp, device)


@dataclass(frozen=True)
class TrainTask:
    """Train one model of the experiment. `digest` is `ModelSpec.digest` (it names the
    checkpoint); `storage`: a directory every worker can write, where the checkpoint goes
    instead of travelling back as bytes."""

    model: ModelSpec
    data: DataSpec
    digest: str
    runtime: Runtime = field(default_factory=Runtime)
    storage: str | None = None

    @property
    def key(self) -> str:
        return f"{self.model.id}:{self.digest}"


@dataclass
class TrainOutput:
    """A trained model: `blob` (bytes) or `path` (on shared storage), and its metadata
    (clean accuracy, history, seconds, the digest and specs it was trained from)."""

    key: str
    metadata: dict[str, Any]
    blob: CheckpointBlob | None = None
    path: str | None = None


@dataclass(frozen=True)
class ModelSource:
    """The model an evaluation task runs against: its store key, and the checkpoint
    directory on shared storage (None: a `CheckpointBlob`, or a given model itself, is passed
    beside the task)."""

    key: str
    path: str | None = None


@dataclass(frozen=True)
class EvalTask:
    """One cell: `attack` at `eps` against the model, on the data's evaluation split.
    `key` is the row it fills (built by the planner)."""

    key: ResultKey
    model: ModelSource
    data: DataSpec | EvalSet
    attack: AttackSpec
    eps: float | None
    batch_size: int = 256
    runtime: Runtime = field(default_factory=Runtime)

    @property
    def label(self) -> str:
        eps = "min-norm" if self.eps is None else f"{self.eps:g}"
        return f"{self.model.key.split(':')[0]} {self.attack.label} eps={eps}"


@dataclass
class EvalOutput:
    key: ResultKey
    metrics: dict[str, Any]
    per_sample: dict[str, list]


@dataclass(frozen=True)
class SelfTestTask:
    """The binarization test of `attacks` (the cells' resolved specs, EOT included) at `eps` on
    the first `n` images of the data's evaluation split. `key` is the row it fills."""

    key: ResultKey
    model: ModelSource
    data: DataSpec | EvalSet
    attacks: tuple[AttackSpec, ...]
    eps: float
    n: int
    runtime: Runtime = field(default_factory=Runtime)
    config: BinarizationConfig = field(default_factory=BinarizationConfig)

    @property
    def label(self) -> str:
        defense = "" if self.key.defense == "none" else f" [{self.key.defense}]"
        return f"{self.model.key.split(':')[0]}{defense} binarization self-test eps={self.eps:g}"


@dataclass(frozen=True)
class ProbeTask:
    """Per-model checks on the evaluation split: the gradient probe and identification metrics
    (which attack at the reference eps of `eps_grid`)."""

    model: ModelSource
    data: DataSpec | EvalSet
    eps_grid: tuple[float, ...]
    runtime: Runtime = field(default_factory=Runtime)


@dataclass
class ProbeOutput:
    key: str
    probe: dict[str, float]
    identification: dict[str, Any]


# ---- the work --------------------------------------------------------------------------------


def accuracy_on_test(model: RobustModel, data: Dataset) -> float:
    """Clean accuracy on the test split, by the model's real decision (a rejection is wrong)."""
    return float((batched_predict(model, data.x_test) == data.y_test).float().mean())


def run_train_task(task: TrainTask, progress: StepProgress | None = None) -> TrainOutput:
    """Train `task.model` on its data (seeded by its train config) and return the checkpoint."""
    with task_runtime(task.runtime) as device:
        data = dataset_for(task.data)
        mspec = task.model
        with seeded(mspec.train.seed):  # initial weights, without touching the caller's random streams
            model = build_model(mspec.model_config(data.num_classes, data.input_shape)).to(device)
        start = time.perf_counter()
        logs = train(
            model, data.x_train.to(device), data.y_train.to(device), mspec.train,
            x_test=data.x_test.to(device), y_test=data.y_test.to(device),
            progress=(lambda step, total, log: progress(step, total)) if progress else None,
        )
        seconds = time.perf_counter() - start
        clean = accuracy_on_test(model, data)
        metadata = {
            "experiment_digest": task.digest,
            "id": mspec.id,
            "train": mspec.train.to_dict(),
            "data": task.data.to_dict(),
            "clean_accuracy": clean,
            "history": [asdict(log) for log in logs],
            "seconds": seconds,
        }
        if task.storage is not None:
            target = Path(task.storage) / f"{mspec.id}-{task.digest}"
            save_checkpoint(model, target, metadata=metadata)
            return TrainOutput(task.key, metadata, path=str(target))
        with tempfile.TemporaryDirectory(prefix="robustlab-train-") as tmp:
            save_checkpoint(model, tmp, metadata=metadata)
            return TrainOutput(task.key, metadata, blob=CheckpointBlob.from_directory(tmp))


def run_eval_task(task: EvalTask, blob: CheckpointBlob | None = None,
                  progress: AttackProgress | None = None) -> EvalOutput:
    """Run one cell; `blob` is the model unless `task.model.path` names it on shared storage."""
    with task_runtime(task.runtime) as device:
        model = model_for(task.model, blob, device)
        x, y = eval_data(task.data)
        metrics, per_sample = evaluate_cell(model, x, y, task.attack, task.eps, task.batch_size,
                                            attack_progress=progress)
        return EvalOutput(task.key, metrics, per_sample)


def run_selftest_task(task: SelfTestTask, blob: CheckpointBlob | None = None) -> EvalOutput:
    """Run one binarization self-test (`robustlab.evaluate.selftests.selftest_row`)."""
    with task_runtime(task.runtime) as device:
        model = model_for(task.model, blob, device)
        x, _ = eval_data(task.data)
        metrics, per_sample = selftest_row(model, x[: task.n].to(device), [a.build(task.eps) for a in task.attacks],
                                           task.config)
        return EvalOutput(task.key, metrics, per_sample)


def run_probe_task(task: ProbeTask, blob: CheckpointBlob | None = None) -> ProbeOutput:
    """The gradient probe and identification metrics of one model."""
    with task_runtime(task.runtime) as device:
        model = model_for(task.model, blob, device)
        x, y = eval_data(task.data)
        probe = probe_for(model, x, y)
        identification = identification_for(model, x, y, list(task.eps_grid))
        return ProbeOutput(task.model.key, probe, identification)


# ---- per-process caches ----------------------------------------------------------------------

_DATA: OrderedDict[str, Dataset] = OrderedDict()
_MODELS: OrderedDict[tuple[str, str], RobustModel] = OrderedDict()
_KEEP_DATA, _KEEP_MODELS = 2, 4


def dataset_for(spec: DataSpec) -> Dataset:
    """The data set `spec` names (loaded once per process)."""
    key = json.dumps({k: v for k, v in spec.to_dict().items() if k != "n_eval"}, sort_keys=True)
    if key not in _DATA:
        _DATA[key] = load_dataset(
            spec.name, root=spec.root, resize=spec.resize, seed=spec.seed, train_per_class=spec.train_per_class
        )
        while len(_DATA) > _KEEP_DATA:
            _DATA.popitem(last=False)
    _DATA.move_to_end(key)
    return _DATA[key]


def eval_split(data: Dataset, n_eval: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The test samples attacked (`robustlab.evaluate.eval_set`: the same samples the driver keys)."""
    samples = eval_set(data, n_eval, seed)
    return samples.x, samples.y


def eval_data(spec: DataSpec | EvalSet) -> tuple[torch.Tensor, torch.Tensor]:
    """The evaluation split of the data set `spec` names (`spec.n_eval` samples, or all), or the
    samples themselves when the caller chose them (an `EvalSet`: the Python API's evaluation)."""
    if isinstance(spec, EvalSet):
        return spec.x, spec.y
    return eval_split(dataset_for(spec), spec.n_eval, spec.seed)


def model_for(source: ModelSource, blob: CheckpointBlob | RobustModel | None, device: torch.device) -> RobustModel:
    """The model a task runs against, on `device`: from `blob` (a checkpoint's bytes, or a given
    model itself: `robustlab evaluate` on a zoo / factory model, or the Python API's object)
    or the checkpoint directory `source.path` names; checkpoints loaded are kept per process."""
    if isinstance(blob, torch.nn.Module):
        return blob.to(device)
    if blob is None and source.path is None:
        raise ValueError(f"{source.key}: neither checkpoint bytes nor a checkpoint path was given")
    if blob is not None:
        ident = blob.digest
    else:
        path = Path(source.path)  # type: ignore[arg-type]
        ident = f"{path.resolve()}@{weights_file(path).stat().st_mtime_ns}"
    cache_key = (ident, str(device))
    if cache_key not in _MODELS:
        model = blob.load(device) if blob is not None else load_checkpoint(source.path, device)  # type: ignore[arg-type]
        _MODELS[cache_key] = model.eval()
        while len(_MODELS) > _KEEP_MODELS:
            _MODELS.popitem(last=False)
    _MODELS.move_to_end(cache_key)
    return _MODELS[cache_key]


@contextmanager
def task_runtime(runtime: Runtime) -> Iterator[torch.device]:
    """Run a task under `runtime`: the installed plugins (entry points) and its plugins imported,
    torch pinned to its threads (restored after); yields the device it runs on."""
    load_entry_points()
    import_plugins(runtime.plugins)
    before = torch.get_num_threads()
    if runtime.threads is not None:
        torch.set_num_threads(runtime.threads)
    try:
        yield pick_device(runtime.device)
    finally:
        torch.set_num_threads(before)
