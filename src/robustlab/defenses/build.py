"""`build_defense(name, model, data, **params)`: train/fit a defense of a trained model.

The one entry point used by the CLI (`robustlab defend ...`), experiment specs and Python::

    built = build_defense("squeeze-detector", model, dataset, squeezers=["bits:4", "median:2"], fpr=0.05)
    built.model      # the defended model (same contract; save it with save_checkpoint)
    built.info       # what the build measured (thresholds, validation FPR, losses, seconds)

`model` is a trained `Classifier` (left unchanged); `data` a `Dataset` or a pair
(x_train, y_train) of images in [0, 1] and labels. Defenses that fit a threshold or tune
on validation data hold out a stratified ``val_fraction`` (default 0.1) of the training
images and train on the rest. Every parameter is checked before anything is trained.

Parameters (defaults):

- ``distillation``: temperature (100), teacher ("retrain" or "base"), init ("base": warm start
  from the model with its linear layer times T, or "scratch"), epochs (10), lr (1e-3),
  optimizer ("adam"), batch_size (128), weight_decay (0), seed;
- ``squeeze``: squeezers (["bits:4"]): the input transform, nothing trained;
- ``squeeze-detector``: squeezers (["bits:4", "median:2"]), fpr (0.05), val_fraction, seed;
- ``magnet``: structure ([3, "pool", 3]), n_pack (1), activation ("relu"), detectors
  (["recon:1", "jsd:10"]), reformer (True), noise (0.1), alpha (0.2), epochs (250),
  batch_size (256), lr (1e-3), fpr (0.05), val_fraction, seed;
- ``msvdd``: projections (128), positive_epochs (30), svdd_epochs (20), c_p, c_n,
  finetune_epochs (3), finetune_lr (1e-4), budget (0.03), beta ("O_c"), v_a, v_p, val_fraction, seed.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from robustlab.core.contract import RobustModel, batched_predict
from robustlab.core.errors import ConfigError, InputError
from robustlab.data.dataset import Dataset
from robustlab.data.splits import stratified_split
from robustlab.defenses.distill import DistillConfig, check_distillable, distill
from robustlab.defenses.magnet import MagNetConfig, build_magnet
from robustlab.defenses.squeeze import SqueezeDetector, SqueezedModel
from robustlab.defenses.squeezers import check_squeezers
from robustlab.models.classifier import Classifier
from robustlab.train import TrainConfig


@dataclass
class DefenseBuild:
    """The defended model and a JSON-able record of its build."""

    model: RobustModel
    info: dict[str, Any] = field(default_factory=dict)


def _split(data, val_fraction: float, seed: int):
    x, y = (data.x_train, data.y_train) if isinstance(data, Dataset) else data
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or len(x) != len(y) or len(x) < 2:
        raise InputError("defense data must be a Dataset or (x_train, y_train) tensors of the same length >= 2")
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    tr, va = stratified_split(y.cpu(), val_fraction, seed)
    return x[tr], y[tr], x[va], y[va]


def _train_xy(data):
    return (data.x_train, data.y_train) if isinstance(data, Dataset) else data


def _fpr_on(model: RobustModel, x: torch.Tensor) -> float:
    return float((batched_predict(model, x) == -1).float().mean()) if len(x) else 0.0


# ------------------------------------------------------------------ per defense: (check, build)
def _distill_config(temperature=100.0, teacher="retrain", init="base", epochs=10, lr=1e-3, optimizer="adam",
                    batch_size=128, weight_decay=0.0, seed=0) -> DistillConfig:
    return DistillConfig(
        temperature=temperature,
        teacher=teacher,
        init=init,
        train=TrainConfig(epochs=epochs, lr=lr, optimizer=optimizer, batch_size=batch_size,
                          weight_decay=weight_decay, seed=seed),
        seed=seed,
    )


def _build_distill(model, data, params) -> DefenseBuild:
    cfg = _distill_config(**params)
    check_distillable(model)
    x, y = _train_xy(data)
    defended = distill(model, x, y, cfg)
    return DefenseBuild(defended, {"config": cfg.to_dict()})


def _squeeze_args(squeezers=("bits:4",)) -> dict[str, Any]:
    return {"squeezers": check_squeezers(squeezers)}


def _build_squeeze(model, data, params) -> DefenseBuild:
    args = _squeeze_args(**params)
    return DefenseBuild(SqueezedModel(model, args["squeezers"]), {"config": args})


def _detector_args(squeezers=("bits:4", "median:2"), fpr=0.05, val_fraction=0.1, seed=0) -> dict[str, Any]:
    from robustlab.defenses.base import check_fpr

    return {"squeezers": check_squeezers(squeezers), "fpr": check_fpr(fpr), "val_fraction": val_fraction,
            "seed": seed}


def _build_detector(model, data, params) -> DefenseBuild:
    args = _detector_args(**params)
    _, _, x_val, _ = _split(data, args["val_fraction"], args["seed"])
    device = next(model.parameters()).device
    defended = SqueezeDetector(model, args["squeezers"]).to(device).eval()
    threshold = defended.fit_threshold(x_val, args["fpr"])
    return DefenseBuild(defended, {"config": args, "threshold": threshold,
                                   "val_fpr": _fpr_on(defended, x_val), "n_val": len(x_val)})


def _magnet_args(val_fraction=0.1, **params) -> tuple[MagNetConfig, float]:
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    return MagNetConfig(**params), val_fraction


def _build_magnet(model, data, params) -> DefenseBuild:
    cfg, val_fraction = _magnet_args(**params)
    x_tr, _, x_val, _ = _split(data, val_fraction, cfg.seed)
    defended, history = build_magnet(model, x_tr, x_val, cfg)
    return DefenseBuild(defended, {"config": cfg.to_dict(), "val_fraction": val_fraction,
                                   "thresholds": defended.thresholds.tolist(),
                                   "val_fpr": _fpr_on(defended, x_val), "n_val": len(x_val),
                                   "loss": history[-1:] })


def _msvdd_args(projections=128, positive_epochs=30, svdd_epochs=20, c_p=10.0, c_n=10.0, finetune_epochs=3,
                finetune_lr=1e-4, budget=0.03, beta="O_c", v_a=0.001, v_p=1.0, val_fraction=0.1, seed=0):
    from robustlab.defenses.svdd import MSVDDConfig, SVDDTrainConfig

    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    cfg = MSVDDConfig(
        num_projections=projections,
        svdd=SVDDTrainConfig(positive_epochs=positive_epochs, epochs=svdd_epochs, c_p=c_p, c_n=c_n, seed=seed),
        finetune=TrainConfig(epochs=finetune_epochs, optimizer="adam", lr=finetune_lr, weight_decay=0.0, seed=seed),
        v_p=v_p, v_a=v_a, budget=budget, beta=beta, seed=seed,
    )
    return cfg, val_fraction


def _build_msvdd(model, data, params) -> DefenseBuild:
    from robustlab.defenses.svdd import build_msvdd

    cfg, val_fraction = _msvdd_args(**params)
    if not isinstance(model, Classifier) or model.config.head != "softmax":
        raise ConfigError("M-SVDD replaces a linear (softmax) head; this model has "
                          f"{getattr(getattr(model, 'config', None), 'head', type(model).__name__)}")
    x_tr, y_tr, x_val, y_val = _split(data, val_fraction, cfg.seed)
    device = next(model.parameters()).device
    built = build_msvdd(model, x_tr.to(device), y_tr.to(device), x_val, y_val, cfg)
    return DefenseBuild(built.model, {"config": cfg.to_dict(), "val_fraction": val_fraction,
                                      "beta_val_accuracy_O_c": built.beta.accuracy_oc,
                                      "beta_val_accuracy_O_d": built.beta.accuracy_od})


_BUILDERS: dict[str, tuple[Callable[..., Any], Callable[..., DefenseBuild]]] = {
    "distillation": (_distill_config, _build_distill),
    "squeeze": (_squeeze_args, _build_squeeze),
    "squeeze-detector": (_detector_args, _build_detector),
    "magnet": (_magnet_args, _build_magnet),
    "msvdd": (_msvdd_args, _build_msvdd),
}
ALIASES = {"distill": "distillation", "svdd": "msvdd", "squeezing": "squeeze", "detector": "squeeze-detector"}


def defense_names() -> list[str]:
    return sorted(_BUILDERS)


def check_defense_params(name: str, **params: Any) -> str:
    """Validate `params` for defense `name` (one ConfigError naming the problem); return the name."""
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in _BUILDERS:
        raise ConfigError(f"unknown defense {name!r}; choose one of {', '.join(defense_names())}")
    check, _ = _BUILDERS[key]
    known = [p for p in inspect.signature(check).parameters if p != "params"]
    if "params" not in inspect.signature(check).parameters:
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ConfigError(f"defense {key}: unknown parameters {unknown}; valid: {known}")
    try:
        check(**params)
    except TypeError as exc:
        raise ConfigError(f"defense {key}: {exc}") from None
    return key


def build_defense(name: str, model: RobustModel, data: Dataset | tuple, **params: Any) -> DefenseBuild:
    """Train/fit defense `name` of `model` (unchanged) on `data`; see the module docstring."""
    key = check_defense_params(name, **params)
    if not isinstance(model, Classifier):
        raise ConfigError(f"a defense is built over a trained robustlab Classifier, got {type(model).__name__}")
    start = time.perf_counter()
    built = _BUILDERS[key][1](model, data, params)
    built.model.eval()
    built.info = {"defense": key, "params": params, **built.info, "seconds": time.perf_counter() - start}
    return built
