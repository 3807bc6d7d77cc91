"""Metrics of one (model, attack, eps) cell and the worst case over attacks, all from `predict`.

Success / Failed / Detected split the initially-correct samples: Success = the attacker's
goal reached (judged by the real decision), Detected = the model rejected the adversarial
input (REJECT), Failed = the rest. Distances are in pixel units on the [0, 1] scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from robustlab.core.contract import REJECT
from robustlab.core.norms import distance
from robustlab.core.results import AttackResult
from robustlab.core.threat import Norm


def per_sample_outcomes(
    x: torch.Tensor, y: torch.Tensor, clean_pred: torch.Tensor, result: AttackResult
) -> dict[str, list]:
    """The per-sample record stored for a cell (plain lists, JSON-able)."""
    return {
        "y": y.cpu().tolist(),
        "clean_pred": clean_pred.cpu().tolist(),
        "adv_pred": result.prediction.cpu().tolist(),
        "success": result.success.cpu().tolist(),
        "l2": distance(result.x_adv, x, Norm.L2).cpu().tolist(),
        "linf": distance(result.x_adv, x, Norm.LINF).cpu().tolist(),
        "queries": result.queries.cpu().tolist(),
    }


def cell_metrics(per_sample: dict[str, list]) -> dict[str, Any]:
    """Clean and robust accuracy, S/F/D over initially-correct samples, perturbation sizes."""
    y = torch.tensor(per_sample["y"])
    clean = torch.tensor(per_sample["clean_pred"])
    adv = torch.tensor(per_sample["adv_pred"])
    success = torch.tensor(per_sample["success"], dtype=torch.bool)
    l2 = torch.tensor(per_sample["l2"], dtype=torch.float64)
    linf = torch.tensor(per_sample["linf"], dtype=torch.float64)
    n = len(y)
    correct = clean == y
    n_correct = int(correct.sum())
    s = success & correct
    d = (adv == REJECT) & correct & ~success
    f = correct & ~s & ~d
    moved = s & (l2 > 0)

    def rate(mask: torch.Tensor, over: int) -> float:
        return float(mask.sum()) / over if over else 0.0

    return {
        "n": n,
        "clean_accuracy": rate(correct, n),
        "robust_accuracy": rate(adv == y, n),
        "success": int(s.sum()),
        "failed": int(f.sum()),
        "detected": int(d.sum()),
        "success_rate": rate(s, n_correct),
        "detection_rate": rate(d, n_correct),
        "mean_l2": float(l2[moved].mean()) if bool(moved.any()) else 0.0,
        "mean_linf": float(linf[moved].mean()) if bool(moved.any()) else 0.0,
        "median_l2": float(l2[moved].median()) if bool(moved.any()) else 0.0,
        "mean_queries": float(torch.tensor(per_sample["queries"], dtype=torch.float64).mean()) if n else 0.0,
    }


def worst_case(cells: Sequence[dict[str, list]]) -> dict[str, Any]:
    """Worst case per sample over several attacks on the same samples.

    A sample is robust only if it is classified correctly under every attack; it counts as
    detected if some attack was rejected and none succeeded.
    """
    if not cells:
        raise ValueError("worst_case needs at least one cell")
    y = torch.tensor(cells[0]["y"])
    for c in cells[1:]:
        if c["y"] != cells[0]["y"]:
            raise ValueError("worst_case: cells are not on the same samples")
    clean = torch.tensor(cells[0]["clean_pred"])
    correct = clean == y
    robust = correct.clone()
    any_success = torch.zeros_like(correct)
    any_detect = torch.zeros_like(correct)
    for c in cells:
        adv = torch.tensor(c["adv_pred"])
        succ = torch.tensor(c["success"], dtype=torch.bool)
        robust &= adv == y
        any_success |= succ & correct
        any_detect |= (adv == REJECT) & correct
    n, n_correct = len(y), int(correct.sum())
    detected = any_detect & ~any_success
    return {
        "n": n,
        "clean_accuracy": float(correct.sum()) / n if n else 0.0,
        "robust_accuracy": float(robust.sum()) / n if n else 0.0,
        "success": int(any_success.sum()),
        "detected": int(detected.sum()),
        "failed": n_correct - int(any_success.sum()) - int(detected.sum()),
        "success_rate": float(any_success.sum()) / n_correct if n_correct else 0.0,
        "detection_rate": float(detected.sum()) / n_correct if n_correct else 0.0,
    }
