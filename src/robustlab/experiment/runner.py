"""Run an experiment: load data, train or reuse each model, evaluate the grid, record it all.

Everything lands in one run directory: ``checkpoints/<model id>/`` (safetensors + config),
``results.sqlite`` (one row per cell), so a rerun skips what is done and an interrupted
run resumes where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from robustlab.core.contract import batched_predict
from robustlab.core.errors import CheckpointError
from robustlab.core.runtime import pick_device, seed_everything
from robustlab.data import Dataset, load_dataset
from robustlab.evaluate.runner import evaluate_grid
from robustlab.evaluate.summary import record_identification, record_probe, summarize
from robustlab.experiment.defenses import obtain_defense
from robustlab.experiment.plan import plan_experiment
from robustlab.experiment.spec import DataSpec, ExperimentSpec, ModelSpec
from robustlab.experiment.transfer import plan_index, run_transfers
from robustlab.models import Classifier, build_model
from robustlab.store.checkpoints import load_checkpoint, read_checkpoint_config, save_checkpoint
from robustlab.store.results import ResultStore
from robustlab.train.trainer import train

Progress = Callable[[str, int, int], None]
"""progress(message, done, total): called as work advances."""


@dataclass
class TrainedModel:
    spec: ModelSpec
    key: str
    model: Classifier
    checkpoint: Path
    clean_accuracy: float
    history: list[dict[str, Any]]
    seconds: float
    reused: bool


def load_data(d: DataSpec) -> Dataset:
    return load_dataset(d.name, root=d.root, resize=d.resize, seed=d.seed, train_per_class=d.train_per_class)


def eval_split(data: Dataset, n_eval: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The test samples attacked: all of them, or a stratified subset of `n_eval`."""
    if n_eval is None or n_eval >= len(data.y_test):
        return data.x_test, data.y_test
    sub = data.subset(n_test=n_eval, seed=seed)
    return sub.x_test, sub.y_test


def obtain_model(
    mspec: ModelSpec,
    data: Dataset,
    dspec: DataSpec,
    checkpoints: Path,
    device: torch.device,
    progress: Progress | None = None,
) -> TrainedModel:
    """Load the model's checkpoint when one with the same digest exists; train it otherwise."""
    digest = mspec.digest(dspec, data.num_classes, data.input_shape)
    key = f"{mspec.id}:{digest}"
    directory = checkpoints / mspec.id
    if (directory / "config.json").is_file():
        try:
            meta = read_checkpoint_config(directory)["metadata"]
            if meta.get("experiment_digest") == digest:
                model = load_checkpoint(directory, device)
                return TrainedModel(
                    mspec, key, model, directory, meta["clean_accuracy"], meta["history"], meta["seconds"], True
                )
        except CheckpointError:
            pass  # unreadable or stale: train afresh and overwrite it
    seed_everything(mspec.train.seed)
    model = build_model(mspec.model_config(data.num_classes, data.input_shape)).to(device)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)

    def on_step(step: int, total: int, log) -> None:
        if progress is not None:
            progress(f"train {mspec.id}", step, total)

    start = time.perf_counter()
    logs = train(model, x_train, y_train, mspec.train, x_test=x_test, y_test=y_test, progress=on_step)
    seconds = time.perf_counter() - start
    clean = float((batched_predict(model, data.x_test) == data.y_test).float().mean())
    history = [asdict(log) for log in logs]
    save_checkpoint(
        model,
        directory,
        metadata={
            "experiment_digest": digest,
            "id": mspec.id,
            "train": mspec.train.to_dict(),
            "data": dspec.to_dict(),
            "clean_accuracy": clean,
            "history": history,
            "seconds": seconds,
        },
    )
    return TrainedModel(mspec, key, model, directory, clean, history, seconds, False)


def run_experiment(
    spec: ExperimentSpec,
    run_dir: str | Path,
    *,
    device: str | None = None,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Run `spec`'s plan into `run_dir`; return the summary rows (see `robustlab.evaluate.summarize`).

    Per data set: train (or reuse) each model, build (or reuse) each of its defenses, run every
    planned cell, then the off-diagonal transfer cells. The store's "index" metadata maps every
    planned cell (and the spec's ids, sweeps and claims) to its result key (`plan_index`).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    dev = pick_device(device)
    plan = plan_experiment(spec)
    models_meta: dict[str, Any] = {}
    keys: dict[str, str] = {}
    with ResultStore(run_dir) as store:
        store.set_meta("experiment", spec.to_dict())
        data_meta: dict[str, Any] = {}
        for dspec in spec.datasets:
            data = load_data(dspec)
            x_eval, y_eval = eval_split(data, dspec.n_eval, dspec.seed)
            data_meta[dspec.key] = {"name": data.name, "source": data.source, "n_train": len(data.y_train),
                                    "n_test": len(data.y_test), "n_eval": len(y_eval),
                                    "input_shape": list(data.input_shape), "classes": list(data.classes)}
            store.set_meta("datasets", data_meta)
            if len(spec.datasets) == 1:
                store.set_meta("data", data_meta[dspec.key])
            trained: dict[str, TrainedModel] = {}
            for task in plan.trains:
                mspec = task.model
                if mspec.data != dspec.key:
                    continue
                tm = obtain_model(mspec, data, dspec, run_dir / "checkpoints", dev, progress)
                trained[mspec.id] = tm
                keys[mspec.id] = tm.key
                models_meta[tm.key] = {
                    "id": mspec.id,
                    "data": dspec.key,
                    "config": tm.model.config.to_dict(),
                    "train": mspec.train.to_dict(),
                    "swept": [list(p) for p in mspec.swept],
                    "checkpoint": str(tm.checkpoint),
                    "clean_accuracy": tm.clean_accuracy,
                    "train_seconds": tm.seconds,
                    "history": tm.history,
                }
                store.set_meta("models", models_meta)
                store.set_meta("index", plan_index(spec, plan, keys))
                record_probe(store, tm.key, tm.model, x_eval, y_eval)
                record_identification(store, tm.key, tm.model, x_eval, y_eval, list(spec.eps))
                _evaluate_cells(spec, plan.cells_of(mspec.id), tm.model, tm.key, "none", x_eval, y_eval,
                                store, progress)
                for d in spec.defenses_for(mspec):
                    defended = obtain_defense(d, tm, data, dev)
                    _evaluate_cells(spec, plan.cells_of(mspec.id, d.id), defended, tm.key, d.result_key,
                                    x_eval, y_eval, store, progress)
            run_transfers(spec, plan, {i: (t.key, t.model) for i, t in trained.items()}, x_eval, y_eval,
                          store, batch_size=spec.batch_size, progress=progress)
        return summarize(store, models=list(models_meta))


def _evaluate_cells(spec, cells, model, key, defense, x, y, store, progress) -> None:
    """The planned cells of one (model, defense), attack by attack over each attack's grid."""
    for attack_id in dict.fromkeys(c.attack for c in cells):
        grid = [c.eps for c in cells if c.attack == attack_id]
        attack = spec.attack(attack_id)
        evaluate_grid(model, key, x, y, [attack.spec], [e for e in grid if e is not None] or list(spec.eps),
                      store, defense=defense, batch_size=spec.batch_size, progress=progress)
