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
from robustlab.core.errors import CheckpointError, ConfigError
from robustlab.core.runtime import pick_device, seeded
from robustlab.data import Dataset
from robustlab.evaluate.samples import eval_set
from robustlab.evaluate.session import Evaluation
from robustlab.evaluate.summary import summarize
from robustlab.experiment.spec import ExperimentSpec, ModelSpec
from robustlab.models import Classifier, build_model
from robustlab.store.checkpoints import load_checkpoint, read_checkpoint_config, save_checkpoint
from robustlab.train.adversarial import recipe_label
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
    return spec.data.load()


def eval_split(data: Dataset, n_eval: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The test samples attacked (see `robustlab.evaluate.eval_set`, which also names them)."""
    samples = eval_set(data, n_eval, seed)
    return samples.x, samples.y


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
    with seeded(mspec.train.seed):  # the initial weights, without touching the caller's random streams
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
    overwrite: bool = False,
) -> list[dict[str, Any]]:
    """Run `spec` into `run_dir`; return the summary rows (see `robustlab.evaluate.summarize`).

    Everything is validated before anything is trained or written: the data, every model
    config, every attack at every eps, and the run directory (see `Evaluation`).
    """
    run_dir = Path(run_dir)
    dev = pick_device(device)
    data = load_data(spec)
    samples = eval_set(data, spec.data.n_eval, spec.data.seed)
    for i, mspec in enumerate(spec.models):  # bad model configs fail here, before any training
        try:
            build_model(mspec.model_config(data.num_classes, data.input_shape))
        except (ConfigError, TypeError, ValueError) as exc:
            raise ConfigError(f"models[{i}] ({mspec.id}): {' '.join(str(exc).split())}") from None
    evaluation = Evaluation(run_dir, samples, spec.attacks, spec.eps, batch_size=spec.batch_size,
                            overwrite=overwrite, allow=("checkpoints",))
    keys: list[str] = []
    with evaluation.open_store() as store:
        store.set_meta("experiment", spec.to_dict())
        for mspec in spec.models:
            trained = obtain_model(mspec, data, spec, run_dir / "checkpoints", dev, progress)
            info = {
                "id": mspec.id,
                "config": trained.model.config.to_dict(),
                "checkpoint": str(trained.checkpoint),
                "clean_accuracy": trained.clean_accuracy,
                "train": trained.spec.train.to_dict(),
                "train_seconds": trained.seconds,
                "training": recipe_label(mspec.train.to_dict()),
                "warning": training_warning(trained.clean_accuracy, data.num_classes, data.name),
                "history": trained.history,
            }
            evaluation.run(trained.model, trained.key, info=info, progress=progress, store=store)
            keys.append(trained.key)
        return summarize(store, models=keys, samples=samples.digest)
