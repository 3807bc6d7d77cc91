"""The parts of an experiment spec, as plain frozen data: a model entry (`ModelSpec`), where the
tasks run (`ExecutorSpec`), an attack of the grid (`GridAttack`), a defense of the `defenses:`
axis (`DefenseSpec`), the transfer matrix (`TransferSpec`) and a published claim (`Claim`).
Parsing them from a file is `robustlab.experiment.spec`'s job (and the `spec_*` modules')."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustlab.attacks.registry import get_attack_class
from robustlab.core.errors import ConfigError
from robustlab.core.validation import check_int, check_number
from robustlab.data.spec import DataSpec
from robustlab.evaluate.runner import AttackSpec
from robustlab.experiment.executors.base import EXECUTORS
from robustlab.experiment.limits import short_repr
from robustlab.models.config import ModelConfig
from robustlab.train.trainer import TrainConfig

WORST = "worst-case"
METRICS = ("robust_accuracy", "clean_accuracy", "success_rate", "detection_rate", "detection_auc",
           "mean_confidence", "mean_mse", "mean_ssim", "mean_ms_ssim")


@dataclass(frozen=True)
class ModelSpec:
    """One model of the experiment: an id, a partial model config, its training, and (after
    sweep expansion) the swept values and the entry it came from."""

    id: str
    model: dict[str, Any]
    train: TrainConfig = field(default_factory=TrainConfig)
    data: str | None = None
    swept: tuple[tuple[str, Any], ...] = ()
    family: str | None = None
    seed: int | None = None
    given: GivenModel | None = None
    """A model that exists (a checkpoint, zoo weights, a factory with weights, an object):
    evaluated as it is, never trained; `model` and `train` are then unused."""

    @property
    def group(self) -> str:
        """The id without its seed suffix: every seed of one model shares it."""
        return self.id if self.seed is None else self.id.rsplit(SEED_TAG, 1)[0]

    def model_config(self, num_classes: int, input_shape: tuple[int, int, int]) -> ModelConfig:
        full = {"head": "softmax", "num_classes": num_classes, "input_shape": list(input_shape), **self.model}
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


GIVEN_KINDS = ("checkpoint", "zoo", "module", "object")


@dataclass(frozen=True)
class GivenModel:
    """A model that exists, evaluated as it is (the source of `robustlab evaluate`, or a
    ``checkpoint:`` entry of an experiment file). Its store label is `model_label` of its id
    and its weights digest (`robustlab.core.digest`), computed once when the driver loads it.

    `kind`: "checkpoint" (`path`: a robustlab checkpoint directory), "zoo" (`name`: a zoo
    architecture, `path`: its safetensors weights), "module" (`name`: a ``pkg.mod:factory`` or
    ``file.py:factory``, `path`: safetensors weights, or None for an untrained network) or
    "object" (`model`: a `RobustModel` in memory; the local executor only). `mean` / `std`:
    per-channel normalization for zoo / module (on [0, 1] pixels). `key`: a store label given by
    the caller of the Python API (None: `model_label`). `info`: what the report shows about it.
    `defense`: the defense label of its rows (an object's; a checkpoint's comes from its config)."""

    kind: str
    path: str | None = None
    name: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    model: Any = field(default=None, compare=False, repr=False)
    key: str | None = None
    info: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    defense: str = "none"

    def __post_init__(self) -> None:
        if self.kind not in GIVEN_KINDS:
            raise ConfigError(f"unknown model source {short_repr(self.kind)}; choose one of {', '.join(GIVEN_KINDS)}")

    def to_dict(self) -> dict[str, Any]:
        """What a file or the store records of it (an in-memory object is named, not stored)."""
        out = {"kind": self.kind, "path": self.path, "name": self.name,
               "mean": list(self.mean) if self.mean else None, "std": list(self.std) if self.std else None}
        return {k: v for k, v in out.items() if v is not None}


SEED_TAG = "@seed"
"""Model ids of an experiment with several seeds end in ``@seed<N>``."""


@dataclass(frozen=True)
class ExecutorSpec:
    """Where the grid's tasks run. "local": in this process, one after another (no Ray import).
    "ray": one Ray task per training job and per cell; `address` joins a running cluster
    (None starts an embedded local instance with `local_cpus` CPUs, default all).
    `num_cpus` / `num_gpus`: resources of each evaluation task (and of each training task
    unless `train_cpus` / `train_gpus` are given). `storage`: a directory that the driver and
    every worker see; checkpoints are written there instead of travelling as bytes.
    `max_retries`: how often Ray reruns a task whose worker died. `connect_timeout`: seconds
    to wait for the cluster at `address` to answer before giving up (> 0).

    `storage` is the one path a file may name outside the run directory (a mount every worker
    sees): it must be absolute, and only ``<storage>/<name>/<model id>-<digest>/`` is written."""

    name: str = "local"
    address: str | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    train_cpus: float | None = None
    train_gpus: float | None = None
    storage: str | None = None
    local_cpus: int | None = None
    max_retries: int = 3
    connect_timeout: float = 30.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", EXECUTORS.canonical(self.name))
        for label in ("num_cpus", "num_gpus", "train_cpus", "train_gpus"):
            value = getattr(self, label)
            if value is not None:
                check_number(value, f"executor.{label}", 0.0)
        if self.local_cpus is not None:
            check_int(self.local_cpus, "executor.local_cpus", 1)
        check_int(self.max_retries, "executor.max_retries", 0)
        check_number(self.connect_timeout, "executor.connect_timeout", 0.0, strict=True)
        for label in ("address", "storage"):
            value = getattr(self, label)
            if value is not None and (not isinstance(value, str) or not value.strip() or "\0" in value):
                raise ConfigError(f"executor.{label} must be a non-empty string, got {short_repr(value)}")
        if self.storage is not None and not Path(self.storage).is_absolute():
            raise ConfigError(f"executor.storage must be an absolute path (every worker sees it), "
                              f"got {short_repr(self.storage)}")

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
class GridAttack:
    """An attack of the grid: its id (unique in the file), spec, eps grid (minimum-norm
    attacks have none: they run once and report distances), the models it applies to (None =
    every model; e.g. an adaptive loss that only a PCL head has) and the defenses (ids, "none"
    for the undefended model; None = all)."""

    id: str
    spec: AttackSpec
    eps: tuple[float, ...]
    models: tuple[str, ...] | None = None
    defenses: tuple[str, ...] | None = None

    def applies_to(self, model: ModelSpec, defense: str = "none") -> bool:
        in_models = self.models is None or bool({model.id, model.group, model.family} & set(self.models))
        return in_models and (self.defenses is None or defense in self.defenses)

    @property
    def minimum_norm(self) -> bool:
        return get_attack_class(self.spec.name).minimum_norm


@dataclass(frozen=True)
class DefenseSpec:
    """A defense of the `defenses:` axis: id, registry name, its arguments, the models it
    applies to (None = every model), and whether its non-adaptive cells are planned too
    (adversarials of the undefended model shown to the defended one)."""

    id: str
    name: str
    args: dict[str, Any]
    models: tuple[str, ...] | None = None
    non_adaptive: bool = False

    def key(self) -> str:
        return json.dumps({"name": self.name, **self.args}, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class TransferSpec:
    """Adversarials crafted on each source, judged on each target (models of the file, by id),
    for each of `attacks` (ids) at each of its eps values in `eps` (default: its positive grid)."""

    sources: tuple[str, ...]
    targets: tuple[str, ...]
    attacks: tuple[str, ...]
    eps: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Claim:
    """A published claim and the grid cell it is judged on (its verdict is computed, see
    `robustlab.report.verdicts`). Two forms:

    - a **value**: ``published`` (a fraction) with a ``tolerance`` (default 0.05);
    - a **comparison** (``than`` another model of the file): ``model`` is more robust than
      ``than`` (``direction`` "higher", default) or less ("lower"), by at least ``margin``;
      ``published`` is then optional (the paper's difference, shown); ``than_defense``
      (default: the claim's ``defense``) compares with another defense, e.g. a defended model
      against its own base (``than`` = ``model``, ``than_defense: none``).

    ``attack`` is an attack id or "worst-case"; ``source`` (a transfer cell) names the model
    the adversarials come from. ``model``, ``than`` and ``source`` name models without their
    seed suffix. ``paper_eps`` / ``paper_data``: the eps and data set the paper states the
    claim at, when not the cell's (the verdict is then inconclusive: measured elsewhere).
    ``deviations``: known differences from the paper's setting, printed beside the verdict."""

    model: str
    attack: str
    eps: float | None
    published: float | None
    metric: str = "robust_accuracy"
    defense: str = "none"
    source: str | None = None
    ref: str = ""
    tolerance: float = 0.05
    than: str | None = None
    direction: str = "higher"
    margin: float = 0.0
    paper_eps: float | None = None
    paper_data: str | None = None
    deviations: tuple[str, ...] = ()
    than_defense: str | None = None
