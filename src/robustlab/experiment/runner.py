"""Run an experiment: load data, train or reuse each model, evaluate the grid, record it all.

Everything lands in one run directory: ``checkpoints/<model id>/`` (safetensors + config),
``results.sqlite`` (one row per cell), so a rerun skips what is done and an interrupted
run resumes where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from robustlab.core.contract import batched_predict
from robustlab.core.errors import CheckpointError
from robustlab.core.runtime import pick_device, seed_everything
from robustlab.data import Dataset, load_dataset
from robustlab.evaluate.plan import GridPlan
from robustlab.evaluate.runner import evaluate_grid
from robustlab.evaluate.summary import record_identification, record_probe, summarize
from robustlab.experiment.spec import ExperimentSpec, ModelSpec
from robustlab.models import Classifier, build_model
from robustlab.store.checkpoints import load_checkpoint, read_checkpoint_config, save_checkpoint
from robustlab.store.results import ResultStore
from robustlab.train.defaults import training_warning
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


def load_data(spec: ExperimentSpec) -> Dataset:
    d = spec.data
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
    spec: ExperimentSpec,
    checkpoints: Path,
    device: torch.device,
    progress: Progress | None = None,
) -> TrainedModel:
    """Load the model's checkpoint when one with the same digest exists; train it otherwise."""
    mspec = replace(mspec, train=mspec.train.resolved(len(data.y_train), mspec.model.get("head", "softmax")))
    digest = mspec.digest(spec.data, data.num_classes, data.input_shape)
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
            "data": spec.data.to_dict(),
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
    on_plan: Callable[[str, GridPlan], None] | None = None,
) -> list[dict[str, Any]]:
    """Run `spec` into `run_dir`; return the summary rows (see `robustlab.evaluate.summarize`).
    `on_plan(model id, plan)` hears each model's evaluation plan before its attacks run."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    dev = pick_device(device)
    data = load_data(spec)
    x_eval, y_eval = eval_split(data, spec.data.n_eval, spec.data.seed)
    models_meta: dict[str, Any] = {}
    with ResultStore(run_dir) as store:
        store.set_meta("experiment", spec.to_dict())
        store.set_meta("data", {"name": data.name, "source": data.source, "n_train": len(data.y_train),
                                "n_test": len(data.y_test), "n_eval": len(y_eval),
                                "input_shape": list(data.input_shape), "classes": list(data.classes)})
        for mspec in spec.models:
            trained = obtain_model(mspec, data, spec, run_dir / "checkpoints", dev, progress)
            models_meta[trained.key] = {
                "id": mspec.id,
                "config": trained.model.config.to_dict(),
                "checkpoint": str(trained.checkpoint),
                "clean_accuracy": trained.clean_accuracy,
                "train": trained.spec.train.to_dict(),
                "train_seconds": trained.seconds,
                "warning": training_warning(trained.clean_accuracy, data.num_classes, data.name),
                "history": trained.history,
            }
            store.set_meta("models", models_meta)
            record_probe(store, trained.key, trained.model, x_eval, y_eval)
            record_identification(store, trained.key, trained.model, x_eval, y_eval, list(spec.eps))
            evaluate_grid(
                trained.model,
                trained.key,
                x_eval,
                y_eval,
                spec.attacks,
                spec.eps,
                store,
                batch_size=spec.batch_size,
                progress=progress,
                on_plan=(lambda plan, mid=mspec.id: on_plan(mid, plan)) if on_plan is not None else None,
            )
        return summarize(store, models=list(models_meta))
