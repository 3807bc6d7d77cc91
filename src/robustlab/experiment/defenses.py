"""The `defenses:` axis of an experiment: each defense built once per model, cached in the run dir.

A defended model is saved as a checkpoint (safetensors + JSON, the defense in its config)
under ``checkpoints/<model id>/defenses/<defense id>/`` with the digest of (base model key,
defense spec) in its metadata, so a rerun reloads it instead of fitting it again; a changed
model or defense spec fits it afresh. Fitting goes through `fit_defense`.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from robustlab.core.contract import RobustModel
from robustlab.core.errors import CheckpointError, ConfigError
from robustlab.data import Dataset
from robustlab.store.checkpoints import load_checkpoint, read_checkpoint_config, save_checkpoint

if TYPE_CHECKING:
    from robustlab.experiment.spec import DefenseSpec


def validation_split(data: Dataset, fraction: float = 0.1) -> tuple[torch.Tensor, ...]:
    """(x_fit, y_fit, x_val, y_val): every round(1/fraction)-th training sample held out for
    the defense's thresholds, deterministic."""
    every = max(2, round(1 / fraction))
    idx = torch.arange(len(data.y_train))
    val = idx % every == 0
    return data.x_train[~val], data.y_train[~val], data.x_train[val], data.y_train[val]


def msvdd_config(where: str, args: dict[str, Any]):
    """The `MSVDDConfig` of a YAML defense entry (nested svdd / finetune mappings included)."""
    from robustlab.defenses.svdd.build import MSVDDConfig
    from robustlab.defenses.svdd.training import SVDDTrainConfig
    from robustlab.train import TrainConfig

    args = dict(args)
    try:
        if isinstance(args.get("svdd"), dict):
            args["svdd"] = SVDDTrainConfig(**args["svdd"])
        if isinstance(args.get("finetune"), dict):
            args["finetune"] = TrainConfig(**args["finetune"])
        return MSVDDConfig(**args)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def check_defense(where: str, name: str, args: dict[str, Any]) -> None:
    """Validate a defense entry before anything is trained (ConfigError naming the problem)."""
    if name == "msvdd":
        msvdd_config(where, args)
        return
    import robustlab.defenses as defenses

    check = getattr(defenses, "check_defense_args", None)
    if not hasattr(defenses, "fit_defense"):
        raise ConfigError(f"{where}: defense {name!r} cannot be fitted from an experiment yet")
    if check is not None:
        check(name, args)


def fit_defense(d: DefenseSpec, model: RobustModel, data: Dataset, device: torch.device) -> RobustModel:
    """Fit defense `d` over `model` (left unchanged) on the training split of `data`."""
    x_fit, y_fit, x_val, y_val = (t.to(device) for t in validation_split(data))
    if d.name == "msvdd":
        from robustlab.defenses.svdd.build import build_msvdd

        return build_msvdd(model, x_fit, y_fit, x_val, y_val, msvdd_config(f"defense {d.id}", d.args)).model
    import robustlab.defenses as defenses

    fit = getattr(defenses, "fit_defense", None)
    if fit is None:
        raise ConfigError(f"defense {d.name!r} cannot be fitted from an experiment yet")
    return fit(d.name, model, x_fit, y_fit, x_val, y_val, **d.args)


def obtain_defense(d: DefenseSpec, trained, data: Dataset, device: torch.device) -> RobustModel:
    """The defended model of `trained` (a `TrainedModel`): from its cache, else fitted and cached."""
    directory = Path(trained.checkpoint) / "defenses" / d.id
    digest = hashlib.sha256(f"{trained.key}|{d.key()}".encode()).hexdigest()[:12]
    if (directory / "config.json").is_file():
        try:
            if read_checkpoint_config(directory)["metadata"].get("defense_digest") == digest:
                return load_checkpoint(directory, device).eval()
        except CheckpointError:
            pass  # unreadable or stale: fit afresh
    start = time.perf_counter()
    defended = fit_defense(d, trained.model, data, device).eval()
    save_checkpoint(defended, directory, metadata={"defense_digest": digest, "defense": d.id,
                                                    "base": trained.key, "seconds": time.perf_counter() - start})
    return defended
