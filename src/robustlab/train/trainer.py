"""The trainer: optimizer, LR schedule, weight decay, held-out evaluation each epoch, progress.

Same seed, same data, same device: bit-identical weights (batches are drawn from a
seeded CPU generator and every random op is seeded).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from robustlab.core.contract import RobustModel, batched_predict
from robustlab.core.errors import ConfigError
from robustlab.core.runtime import seeded
from robustlab.train.adversarial import AdvConfig, adversarial
from robustlab.train.distributed import data_parallel
from robustlab.train.objectives import Objective, make_objective


@dataclass
class TrainConfig:
    """How to train. `lr` is the peak learning rate; `schedule` is "cosine", "step" or "constant"
    ("step" multiplies by `gamma` at each fraction of the run in `milestones`).

    Fields left None (optimizer, lr, epochs, batch_size, weight_decay) are "auto": `train`
    fills them from `robustlab.train.defaults` for the data size and head (`resolved`)."""

    epochs: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float | None = None
    schedule: str = "cosine"
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    seed: int = 0
    objective: str | None = None
    objective_args: dict[str, Any] = field(default_factory=dict)
    adv: AdvConfig | None = None
    """Adversarial training recipe (None: standard training); a mapping is read as an AdvConfig."""

    def __post_init__(self) -> None:
        if isinstance(self.adv, dict):
            self.adv = AdvConfig.from_dict(self.adv)
        elif self.adv is not None and not isinstance(self.adv, AdvConfig):
            raise ConfigError(f"adv must be an AdvConfig or a mapping, got {type(self.adv).__name__}")
        if (self.epochs is not None and self.epochs < 0) or (self.batch_size is not None and self.batch_size < 1):
            raise ConfigError("epochs must be >= 0 and batch_size >= 1")
        if self.optimizer is not None and self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose sgd or adam")
        if self.schedule not in ("cosine", "step", "constant"):
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose cosine, step or constant")
        if (self.lr is not None and not self.lr > 0) or (self.weight_decay is not None and not self.weight_decay >= 0):
            raise ConfigError("lr must be > 0 and weight_decay >= 0")

    def resolved(self, n_train: int, head: str | None = None) -> TrainConfig:
        """This config with every auto field filled (see `robustlab.train.defaults`)."""
        from robustlab.train.defaults import resolve_config

        return resolve_config(self, n_train, head)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d


@dataclass
class EpochLog:
    epoch: int
    loss: float
    train_accuracy: float
    test_accuracy: float | None
    lr: float
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)


ProgressFn = Callable[[int, int, EpochLog | None], None]


def _make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _lr_factor(cfg: TrainConfig, progress: float) -> float:
    """LR multiplier at `progress` in [0, 1) of the run."""
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if cfg.schedule == "step":
        return cfg.gamma ** sum(progress >= m for m in cfg.milestones)
    return 1.0


def train(
    model: RobustModel,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    cfg: TrainConfig,
    *,
    x_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    objective: Objective | None = None,
    progress: ProgressFn | None = None,
) -> list[EpochLog]:
    """Train `model` in place on (x_train, y_train) (images in [0, 1], on the model's device).

    The objective defaults to `cfg.objective`, else the head's own (`model.head.objective`);
    with `cfg.adv` it is wrapped for adversarial training (its guard attacks the first
    `cfg.adv.guard` test images, or training images when no test data is given).
    After the last epoch, heads that decide from a gallery get the training embeddings.
    Auto fields of `cfg` are filled first (`cfg.resolved`).
    Returns one `EpochLog` per epoch (test accuracy from `predict` when test data is given).
    Random draws are seeded by `cfg.seed` inside; the caller's global random states are left as
    they were. The model is left in eval mode (trained models are evaluated next).
    """
    cfg = cfg.resolved(len(x_train), getattr(getattr(model, "config", None), "head", None))
    with seeded(cfg.seed) as generator:
        return _train(model, x_train, y_train, cfg, x_test, y_test, objective, progress, generator)


def _train(model, x_train, y_train, cfg, x_test, y_test, objective, progress, generator) -> list[EpochLog]:
    if objective is None:
        name = cfg.objective or getattr(getattr(model, "head", None), "objective", "cross_entropy")
        objective = make_objective(name, model, **cfg.objective_args)
    if cfg.adv is not None:
        held_out = (x_test, y_test) if x_test is not None and y_test is not None and len(x_test) else (x_train, y_train)
        objective = adversarial(objective, model, cfg.adv, seed=cfg.seed, guard_data=held_out)
    device = x_train.device
    objective.to(device)
    extra_optimizer = objective.extra_optimizer()
    owned = {id(p) for g in extra_optimizer.param_groups for p in g["params"]} if extra_optimizer else set()
    optimizer = _make_optimizer([p for p in model.parameters() if id(p) not in owned], cfg)
    parallel = data_parallel(model, objective)  # under torchrun: DDP, this rank's share of each batch
    batches_per_epoch = max(1, math.ceil(len(x_train) / cfg.batch_size))
    total_steps = max(1, cfg.epochs * batches_per_epoch)
    history: list[EpochLog] = []
    step = 0
    for epoch in range(cfg.epochs):
        start = time.perf_counter()
        model.train()
        objective.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen = 0
        for batch in objective.make_batches(y_train.cpu(), cfg.batch_size, generator):
            batch = (parallel.shard(batch) if parallel is not None else batch).to(device)
            lr = cfg.lr * _lr_factor(cfg, step / total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            xb, yb = x_train[batch], y_train[batch]
            out = parallel.objective(xb, yb, epoch) if parallel is not None else objective(model, xb, yb, epoch)
            optimizer.zero_grad(set_to_none=True)
            if extra_optimizer is not None:
                extra_optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            if extra_optimizer is not None:
                extra_optimizer.step()
            loss_sum += out.loss.detach() * len(batch)
            if out.scores is not None:
                correct += (out.scores.detach()[:, : model.num_classes].argmax(1) == yb).sum()
            seen += len(batch)
            step += 1
            if progress is not None:
                progress(step, total_steps, None)
        model.eval()
        test_acc = None
        held_out = x_test is not None and y_test is not None and len(x_test)
        if held_out or objective.evaluates_each_epoch:
            _fit_gallery(model, x_train, y_train)
        if held_out:
            test_acc = (parallel.accuracy(model, x_test, y_test) if parallel is not None
                        else float((batched_predict(model, x_test) == y_test.cpu()).float().mean()))
        extra = objective.end_epoch(model, epoch)
        totals = [float(loss_sum), float(correct), float(seen)]
        if parallel is not None:
            totals = parallel.sum(*totals)  # over every rank
        log = EpochLog(
            epoch=epoch + 1,
            loss=totals[0] / max(totals[2], 1),
            train_accuracy=totals[1] / max(totals[2], 1),
            test_accuracy=test_acc,
            lr=lr if cfg.epochs else cfg.lr,
            seconds=time.perf_counter() - start,
            extra=extra,
        )
        history.append(log)
        if progress is not None:
            progress(step, total_steps, log)
    model.eval()
    optimizer.zero_grad(set_to_none=True)
    _fit_gallery(model, x_train, y_train)
    return history


@torch.no_grad()
def _fit_gallery(model: RobustModel, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> None:
    """Give heads that keep training embeddings (k-NN) the embeddings of the training set."""
    head = getattr(model, "head", None)
    if head is None or not getattr(head, "needs_gallery", False):
        return
    feats = torch.cat([model.embed(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    head.fit_gallery(feats, y)
