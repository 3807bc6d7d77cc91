"""Judging adversarial images on a model other than the one they were crafted on.

- `outcome_on`: Success (a wrong class), Detected (REJECT) and Failed (the true class) of
  given adversarials on one model, over the samples it classifies correctly when clean (the
  paper-001 evaluation of M-SVDD-D: crafted on W~-LC, judged on the SVDD model);
- `transfer_matrix`: adversarials crafted on each source model and judged on each target,
  a source x target matrix (diagonal = white-box).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from robustlab.attacks.base import Attack
from robustlab.core.contract import REJECT, RobustModel, batched_predict
from robustlab.core.errors import InputError
from robustlab.evaluate.runner import run_attack


@torch.no_grad()
def outcome_on(
    model: RobustModel,
    x: torch.Tensor,
    y: torch.Tensor,
    x_adv: torch.Tensor,
    clean_pred: torch.Tensor | None = None,
    batch_size: int = 512,
) -> dict[str, Any]:
    """S/F/D rates (fractions of the initially-correct samples) of x_adv on `model`, plus counts,
    robust accuracy and per-sample decisions. Rates are 0 when no sample is initially correct."""
    clean = batched_predict(model, x, batch_size) if clean_pred is None else clean_pred.cpu()
    adv = batched_predict(model, x_adv, batch_size)
    y = y.cpu()
    correct = clean == y
    success = correct & (adv != y) & (adv != REJECT)
    detected = correct & (adv == REJECT)
    failed = correct & (adv == y)
    n_correct = int(correct.sum())

    def rate(m: torch.Tensor) -> float:
        return float(m.sum()) / n_correct if n_correct else 0.0

    return {
        "n": len(y),
        "n_correct": n_correct,
        "clean_accuracy": float(correct.float().mean()) if len(y) else 0.0,
        "robust_accuracy": float((adv == y).float().mean()) if len(y) else 0.0,
        "success_rate": rate(success),
        "failed_rate": rate(failed),
        "detected_rate": rate(detected),
        "success": success,
        "detected": detected,
        "failed": failed,
        "adv_pred": adv,
    }


@dataclass
class TransferMatrix:
    """``accuracy[i][j]``: accuracy of target j on the adversarials crafted on source i;
    ``success[i][j]``: fraction of the samples target j got right clean that it gets wrong
    (not rejected) on them. Diagonal = white-box."""

    sources: list[str]
    targets: list[str]
    accuracy: list[list[float]]
    success: list[list[float]]

    def to_dict(self) -> dict[str, object]:
        return {"sources": self.sources, "targets": self.targets, "accuracy": self.accuracy, "success": self.success}


def transfer_matrix(
    models: Mapping[str, RobustModel],
    x: torch.Tensor,
    y: torch.Tensor,
    attack: Attack,
    targets: Mapping[str, RobustModel] | None = None,
    batch_size: int = 256,
) -> TransferMatrix:
    """Craft with `attack` on every model of `models` and evaluate on every model of
    `targets` (default: the same models). Models must be in eval mode, on one device."""
    if not models:
        raise InputError("transfer_matrix needs at least one source model")
    targets = dict(targets) if targets is not None else dict(models)
    clean = {name: batched_predict(m, x, batch_size) for name, m in targets.items()}
    accuracy, success = [], []
    for src_model in models.values():
        x_adv = run_attack(attack, src_model, x, y, batch_size).x_adv
        outcomes = [outcome_on(tgt, x, y, x_adv, clean[name], batch_size) for name, tgt in targets.items()]
        accuracy.append([o["robust_accuracy"] for o in outcomes])
        success.append([o["success_rate"] for o in outcomes])
    return TransferMatrix(list(models), list(targets), accuracy, success)
