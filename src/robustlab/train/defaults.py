"""Training defaults, in one place: `TrainConfig` leaves a field None ("auto") and
`resolve_config` fills it here, for the CLI, the YAML runner and the Python API alike.

- optimizer Adam; peak learning rate 2e-3 for Adam, 0.05 for SGD; weight decay 0 for Adam
  (it is L2 on the gradient there, not decoupled), 5e-4 for SGD; batch size 64;
- epochs adapt to the data size: enough for about `TARGET_STEPS` optimizer steps, between
  `MIN_EPOCHS` and `MAX_EPOCHS` (digits, 1,257 training images: 26 epochs; Fashion-MNIST,
  60,000: 5 epochs);
- per head (`HEAD_DEFAULTS`): objective arguments a head needs to train with the above
  (PCL: a cross-entropy warm-up of a quarter of the epochs before the prototype loss).

Anything given explicitly is kept as it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from robustlab.train.trainer import TrainConfig

OPTIMIZER = "adam"
LR = {"adam": 2e-3, "sgd": 0.05}
WEIGHT_DECAY = {"adam": 0.0, "sgd": 5e-4}
BATCH_SIZE = 64
TARGET_STEPS = 500
MIN_EPOCHS = 5
MAX_EPOCHS = 60

HEAD_DEFAULTS: dict[str, Callable[[int], dict[str, Any]]] = {
    "pcl": lambda epochs: {"warmup_epochs": max(1, epochs // 4)},
}
"""head name -> (resolved epochs -> default objective arguments); explicit arguments win."""


def auto_epochs(n_train: int, batch_size: int) -> int:
    """Epochs giving about TARGET_STEPS optimizer steps, clamped to [MIN_EPOCHS, MAX_EPOCHS]."""
    batches = max(1, math.ceil(n_train / batch_size))
    return int(min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(TARGET_STEPS / batches))))


def resolve_config(cfg: TrainConfig, n_train: int, head: str | None = None) -> TrainConfig:
    """`cfg` with every None ("auto") field filled for `n_train` training images and `head`."""
    optimizer = cfg.optimizer or OPTIMIZER
    batch_size = cfg.batch_size or BATCH_SIZE
    epochs = cfg.epochs if cfg.epochs is not None else auto_epochs(n_train, batch_size)
    args = dict(cfg.objective_args)
    if head in HEAD_DEFAULTS and cfg.objective is None:
        args = {**HEAD_DEFAULTS[head](epochs), **args}
    return replace(
        cfg,
        optimizer=optimizer,
        batch_size=batch_size,
        epochs=epochs,
        lr=cfg.lr if cfg.lr is not None else LR[optimizer],
        weight_decay=cfg.weight_decay if cfg.weight_decay is not None else WEIGHT_DECAY[optimizer],
        objective_args=args,
    )


REFERENCE_ACCURACY = {"digits": 0.97, "fashion-mnist": 0.89, "mnist": 0.98, "orl": 0.9, "cifar10": 0.8}
"""Test accuracy a small model of this toolkit reaches on each data set with the defaults
(benchmarks/heads.json, the demo): what "far below what the data allows" is measured against."""


def training_warning(accuracy: float | None, num_classes: int, data: str | None = None) -> str | None:
    """A one-line warning when a finished run's test accuracy is far below what the data allows:
    below halfway from chance (1 / num_classes) to the data set's reference accuracy (to 0.5
    when the data set has none). None when the run looks trained (or nothing was measured)."""
    if accuracy is None or num_classes < 2:
        return None
    chance = 1.0 / num_classes
    reference = REFERENCE_ACCURACY.get((data or "").split(":")[0], 0.5)
    floor = chance + 0.5 * max(0.0, reference - chance)
    if accuracy >= floor:
        return None
    allows = f"what {data} allows (about {100 * reference:.0f}%)" if data in REFERENCE_ACCURACY else "a trained model"
    return (f"test accuracy {100 * accuracy:.1f}% is far below {allows}, near chance ({100 * chance:.0f}%): "
            "the model did not train; try more epochs, another learning rate or the Adam optimizer")

