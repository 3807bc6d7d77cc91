"""The experiment spec: data, models (config + training), attacks and the eps grid.

Read from YAML/JSON or built in code; every part is validated up front so that a typo
fails before any training starts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from robustlab.core.errors import ConfigError
from robustlab.evaluate.runner import AttackSpec
from robustlab.models.config import ModelConfig
from robustlab.train.trainer import TrainConfig


@dataclass(frozen=True)
class DataSpec:
    """Which data set, how to cut it, and how many test samples to attack."""

    name: str = "digits"
    root: str | None = None
    resize: int | None = None
    seed: int = 0
    n_eval: int | None = None
    train_per_class: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ModelSpec:
    """One model of the experiment: an id, a partial model config, and its training."""

    id: str
    model: dict[str, Any]
    train: TrainConfig = field(default_factory=TrainConfig)

    def model_config(self, num_classes: int, input_shape: tuple[int, int, int]) -> ModelConfig:
        full = {"num_classes": num_classes, "input_shape": list(input_shape), **self.model}
        return ModelConfig.from_dict(full)

    def digest(self, data: DataSpec, num_classes: int, input_shape: tuple[int, int, int]) -> str:
        blob = json.dumps(
            {
                "model": self.model_config(num_classes, input_shape).to_dict(),
                "train": self.train.to_dict(),
                "data": data.to_dict(),
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class ExecutorSpec:
    """Where the grid's tasks run. "local": in this process, one after another (no Ray import).
    "ray": one Ray task per training job and per cell; `address` joins a running cluster
    (None starts an embedded local instance with `local_cpus` CPUs, default all).
    `num_cpus` / `num_gpus`: resources of each evaluation task (and of each training task
    unless `train_cpus` / `train_gpus` are given). `storage`: a directory that the driver and
    every worker see; checkpoints are written there instead of travelling as bytes.
    `max_retries`: how often Ray reruns a task whose worker died."""

    name: str = "local"
    address: str | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    train_cpus: float | None = None
    train_gpus: float | None = None
    storage: str | None = None
    local_cpus: int | None = None
    max_retries: int = 3

    def __post_init__(self) -> None:
        if self.name not in EXECUTORS:
            raise ConfigError(f"unknown executor {self.name!r}; choose one of {', '.join(EXECUTORS)}")
        for label in ("num_cpus", "num_gpus", "train_cpus", "train_gpus"):
            value = getattr(self, label)
            if value is not None and not (isinstance(value, (int, float)) and value >= 0):
                raise ConfigError(f"executor.{label} must be a number >= 0, got {value!r}")
        if self.local_cpus is not None and self.local_cpus < 1:
            raise ConfigError(f"executor.local_cpus must be >= 1, got {self.local_cpus}")
        if self.max_retries < 0:
            raise ConfigError(f"executor.max_retries must be >= 0, got {self.max_retries}")

    @classmethod
    def from_dict(cls, doc: Any) -> ExecutorSpec:
        if isinstance(doc, str):
            doc = {"name": doc}
        if not isinstance(doc, dict):
            raise ConfigError("executor must be a name (local, ray) or a mapping with a name")
        try:
            return cls(**doc)
        except TypeError as exc:
            raise ConfigError(f"executor: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    data: DataSpec
    models: tuple[ModelSpec, ...]
    attacks: tuple[AttackSpec, ...]
    eps: tuple[float, ...]
    batch_size: int = 256
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)
    plugins: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ExperimentSpec:
        if not isinstance(doc, dict):
            raise ConfigError("an experiment must be a mapping")
        known = {"name", "data", "models", "attacks", "eps", "batch_size", "executor", "plugins"}
        unknown = set(doc) - known
        if unknown:
            raise ConfigError(f"unknown experiment keys {sorted(unknown)}; known: {sorted(known)}")
        plugins = doc.get("plugins") or []
        if not isinstance(plugins, list) or not all(isinstance(m, str) for m in plugins):
            raise ConfigError("plugins must be a list of module names")
        import_plugins(plugins)  # before the attacks and models are checked: they may register some
        executor = ExecutorSpec.from_dict(doc.get("executor") or "local")
        try:
            data = DataSpec(**(doc.get("data") or {}))
        except TypeError as exc:
            raise ConfigError(f"data: {exc}") from None
        models = []
        for i, m in enumerate(doc.get("models") or []):
            if not isinstance(m, dict) or "model" not in m:
                raise ConfigError(f"models[{i}] needs a 'model' mapping (backbone, head, ...)")
            train_args = dict(m.get("train") or {})
            if "milestones" in train_args:
                train_args["milestones"] = tuple(train_args["milestones"])
            try:
                train = TrainConfig(**train_args)
            except TypeError as exc:
                raise ConfigError(f"models[{i}].train: {exc}") from None
            model_id = str(m.get("id") or f"{m['model'].get('backbone')}-{m['model'].get('head', 'softmax')}")
            models.append(ModelSpec(model_id, dict(m["model"]), train))
        if not models:
            raise ConfigError("an experiment needs at least one model")
        ids = [m.id for m in models]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"model ids must be unique, got {ids}")
        attacks = []
        for i, a in enumerate(doc.get("attacks") or []):
            if isinstance(a, str):
                a = {"name": a}
            if not isinstance(a, dict) or "name" not in a:
                raise ConfigError(f"attacks[{i}] needs a name")
            params = {k: v for k, v in a.items() if k != "name"}
            attacks.append(AttackSpec(a["name"], params))
        eps = tuple(float(e) for e in doc.get("eps", (0.0,)))
        return cls(
            name=str(doc.get("name", "experiment")),
            data=data,
            models=tuple(models),
            attacks=tuple(attacks),
            eps=eps,
            batch_size=int(doc.get("batch_size", 256)),
            executor=executor,
            plugins=tuple(plugins),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> ExperimentSpec:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"no experiment file at {path}")
        try:
            doc = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None
        return cls.from_dict(doc)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "data": self.data.to_dict(),
            "models": [{"id": m.id, "model": m.model, "train": m.train.to_dict()} for m in self.models],
            "attacks": [{"name": a.name, **a.params} for a in self.attacks],
            "eps": list(self.eps),
            "batch_size": self.batch_size,
            "executor": self.executor.to_dict(),
            "plugins": list(self.plugins),
        }


def import_plugins(modules: Sequence[str]) -> None:
    """Import each module: user attacks, heads or defenses register themselves on import."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"plugin {name!r} cannot be imported: {exc}") from None
