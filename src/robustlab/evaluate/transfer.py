"""Judge adversarial images on a model other than the one they were crafted on (or the same).

The paper's evaluation of M-SVDD-D crafts attacks on W~-LC and judges them on the SVDD model;
`outcome_on` does the judging: Success (a wrong class), Detected (REJECT) and Failed (the
true class), over the samples the judged model classifies correctly when clean.
"""

from __future__ import annotations

from typing import Any

import torch

from robustlab.core.contract import REJECT, RobustModel, batched_predict


@torch.no_grad()
def outcome_on(
    model: RobustModel,
    x: torch.Tensor,
    y: torch.Tensor,
    x_adv: torch.Tensor,
    clean_pred: torch.Tensor | None = None,
) -> dict[str, Any]:
    """S/F/D rates (fractions of the initially-correct samples) of x_adv on `model`, plus counts
    and per-sample decisions. Rates are 0 when no sample is initially correct."""
    clean = batched_predict(model, x) if clean_pred is None else clean_pred.cpu()
    adv = batched_predict(model, x_adv)
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
        "success_rate": rate(success),
        "failed_rate": rate(failed),
        "detected_rate": rate(detected),
        "success": success,
        "detected": detected,
        "failed": failed,
        "adv_pred": adv,
    }
