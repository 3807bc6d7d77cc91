"""The `defenses:` axis of an experiment: each defense built once per model, cached in the run dir.

A `DefenseTask` fits a defense over a trained model (`fit_defense`) and returns the defended
checkpoint (safetensors + JSON, the defense in its config); the driver keeps it under
``defenses/<model id>/<defense id>/`` with the digest of (base model key, defense spec) in its
metadata, so a rerun reloads it instead of fitting it again (`reusable_defense`); a changed
model or defense spec fits it afresh.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustlab.core.contract import RobustModel
from robustlab.core.errors import CheckpointError
from robustlab.data import Dataset
from robustlab.experiment.tasks import (
    CheckpointBlob,
    ModelSource,
    Runtime,
    accuracy_on_test,
    dataset_for,
    model_for,
    task_runtime,
)
from robustlab.store.checkpoints import read_checkpoint_config, save_checkpoint

if TYPE_CHECKING:
    from robustlab.data.spec import DataSpec
    from robustlab.experiment.spec_parts import DefenseSpec


def fit_defense(d: DefenseSpec, model: RobustModel, data: Dataset) -> RobustModel:
    """Fit defense `d` over `model` (left unchanged) on the training split of `data`
    (`robustlab.defenses.build_defense`; detectors hold out their own validation part)."""
    from robustlab.defenses import build_defense

    return build_defense(d.name, model, data, **d.args).model


@dataclass(frozen=True)
class DefenseTask:
    """Build defense `defense` over the model `model` (a trained checkpoint) on its data set's
    training split. `digest` (of base key and defense spec) names the cached result."""

    model: ModelSource
    data: DataSpec
    defense: DefenseSpec
    digest: str
    runtime: Runtime = field(default_factory=Runtime)


@dataclass
class DefenseOutput:
    key: str
    defense: str
    blob: CheckpointBlob
    metadata: dict[str, Any]


def defense_digest(model_key: str, d: DefenseSpec) -> str:
    return hashlib.sha256(f"{model_key}|{d.key()}".encode()).hexdigest()[:12]


def reusable_defense(directory: Path, digest: str) -> bool:
    """A cached defended checkpoint at `directory` built from the same model and spec."""
    if not (directory / "config.json").is_file():
        return False
    try:
        return read_checkpoint_config(directory)["metadata"].get("defense_digest") == digest
    except (CheckpointError, KeyError, TypeError, AttributeError):
        return False


def run_defense_task(task: DefenseTask, blob: CheckpointBlob | None = None) -> DefenseOutput:
    """Fit the defense and return the defended checkpoint as bytes (a pure task: no store)."""
    with task_runtime(task.runtime) as device:
        base = model_for(task.model, blob, device)
        data = dataset_for(task.data)
        start = time.perf_counter()
        defended = fit_defense(task.defense, base, data).eval()
        seconds = time.perf_counter() - start
        metadata = {"defense_digest": task.digest, "defense": task.defense.id, "base": task.model.key,
                    "seconds": seconds, "clean_accuracy": accuracy_on_test(defended, data)}
        with tempfile.TemporaryDirectory(prefix="robustlab-defense-") as tmp:
            save_checkpoint(defended, tmp, metadata=metadata)
            return DefenseOutput(task.model.key, task.defense.id, CheckpointBlob.from_directory(tmp), metadata)
