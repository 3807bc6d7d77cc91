"""Transferability matrix: adversarials crafted on each source model, judged on each target."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from robustlab.attacks.base import Attack
from robustlab.core.contract import RobustModel, batched_predict
from robustlab.core.errors import InputError
from robustlab.evaluate.runner import run_attack


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
        return {"sources": self.sources, "targets": self.targets,
                "accuracy": self.accuracy, "success": self.success}


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
        acc_row, succ_row = [], []
        for name, tgt in targets.items():
            pred = batched_predict(tgt, x_adv, batch_size)
            correct = clean[name] == y
            fooled = correct & (pred != y) & (pred >= 0)
            acc_row.append(float((pred == y).float().mean()))
            succ_row.append(float(fooled.sum()) / max(int(correct.sum()), 1))
        accuracy.append(acc_row)
        success.append(succ_row)
    return TransferMatrix(list(models), list(targets), accuracy, success)
