"""The per-cell metrics the papers report beside robust accuracy, stored with every cell.

Per sample (kept in the cell's per-sample record):
- ``confidence``: the largest softmax probability over the real classes of the scores at
  x_adv, in [1/C, 1] (paper 002's "confidence under attack", Tables 5.3-5.8);
- ``mse``: per-pixel mean squared error of the perturbation ([0, 1] pixel scale) and
  ``ssim``: SSIM, or MS-SSIM for colour images large enough (paper 001, Tables 2-4);
- ``rank``: the 1-based rank of the true label at x_adv (for the K-A3 rank pmf).

Per cell: their means (``mean_confidence`` over all samples, ``mean_mse`` and ``mean_ssim`` or
``mean_ms_ssim`` over the successful, moved samples, as the papers do),
the K-A3 rank pmf and its eq. 6 check when the attack is ``ka3``, and for models that can
reject the detection ROC-AUC of their rejection score, clean inputs (negatives) against the
adversarial versions of the initially-correct ones (positives) (paper 003's detection AUC).
"""

from __future__ import annotations

from typing import Any

import torch

from robustlab.core.contract import batched_predict
from robustlab.core.errors import InputError
from robustlab.core.results import AttackResult
from robustlab.evaluate.perceptual import mse, similarity
from robustlab.evaluate.ranks import kanonymity_check, label_ranks


@torch.no_grad()
def _scores(model, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    device = next(model.parameters()).device
    return torch.cat([model(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)])


def rejection_score(model, scores: torch.Tensor) -> torch.Tensor | None:
    """How strongly the model rejects each input from its scores, higher = more "adversarial"
    (N,): the reject column's lead over the best class. None for models that cannot reject."""
    if not getattr(model, "can_reject", False) or scores.shape[1] <= model.num_classes:
        return None
    c = model.num_classes
    return scores[:, c] - scores[:, :c].amax(dim=1)


@torch.no_grad()
def detection_scores(model, x: torch.Tensor, batch_size: int) -> torch.Tensor | None:
    """The model's own `detection_score` (detectors of `robustlab.defenses`) over `x`, else
    `rejection_score` of its scores; None for a model that cannot reject."""
    if not getattr(model, "can_reject", False):
        return None
    if hasattr(model, "detection_score"):
        device = next(model.parameters()).device
        return torch.cat([model.detection_score(x[i : i + batch_size].to(device)).float().cpu()
                          for i in range(0, len(x), batch_size)])
    return rejection_score(model, _scores(model, x, batch_size))


def detection_auc(clean: torch.Tensor, adversarial: torch.Tensor) -> float | None:
    """ROC-AUC of a score separating adversarial (positive) from clean (negative) inputs."""
    from sklearn.metrics import roc_auc_score

    if len(clean) == 0 or len(adversarial) == 0:
        return None
    labels = [0] * len(clean) + [1] * len(adversarial)
    return float(roc_auc_score(labels, torch.cat([clean, adversarial]).double().numpy()))


def cell_extras(
    model, x: torch.Tensor, y: torch.Tensor, result: AttackResult, *,
    attack_name: str = "", K: int | None = None, batch_size: int = 256,
) -> tuple[dict[str, list], dict[str, Any]]:
    """(per-sample extras, cell metrics) of one cell: see the module docstring. `x`, `y` and
    `result` on the CPU; `model` in eval mode."""
    c = model.num_classes
    adv_scores = _scores(model, result.x_adv, batch_size)
    probs = torch.softmax(adv_scores[:, :c], dim=1)
    confidence = probs.amax(dim=1)
    ranks = label_ranks(adv_scores, y.cpu(), c)
    err = mse(x, result.x_adv)
    per_sample = {"confidence": confidence.tolist(), "mse": err.tolist(), "rank": ranks.tolist()}
    moved = result.success.cpu() & (err > 0)
    metrics: dict[str, Any] = {
        "mean_confidence": float(confidence.mean()) if len(y) else 0.0,
        "confidence_success": float(confidence[moved].mean()) if bool(moved.any()) else None,
        "mean_mse": float(err[moved].mean()) if bool(moved.any()) else 0.0,
    }
    try:
        sim_name, sim = similarity(x, result.x_adv, batch_size)
    except InputError:  # images too small for the SSIM window: no similarity for this cell
        metrics["similarity"] = None
    else:
        per_sample[sim_name] = sim.tolist()
        metrics["similarity"] = sim_name
        metrics[f"mean_{sim_name}"] = float(sim[moved].mean()) if bool(moved.any()) else 1.0
    if attack_name == "ka3" and K is not None:
        check = kanonymity_check(ranks, c, K)
        metrics["rank_pmf"] = check.pmf
        metrics["ka3_check"] = {"K": K, "max_p": check.max_p, "bound": check.bound,
                                "passed": check.passed, "passed_strict": check.passed_strict,
                                "summary": check.summary()}
    adv_detection = detection_scores(model, result.x_adv, batch_size)
    clean_detection = detection_scores(model, x, batch_size) if adv_detection is not None else None
    if adv_detection is not None and clean_detection is not None:
        correct = batched_predict(model, x, batch_size) == y.cpu()
        metrics["detection_auc"] = detection_auc(clean_detection, adv_detection[correct])
    return per_sample, metrics
