"""Automatic gradient-masking checks (Athalye et al. 2018; Carlini et al. 2019, section 5).

Two sources of evidence:

- rules over the result rows of one model: a single-step attack beating the iterative
  ones, a black-box or transfer attack beating the white-box ones, robust accuracy rising
  with eps, and accuracy not reaching chance at a budget that allows any image;
- a probe of the model's input gradients: zero or non-finite gradients, and gradients that
  increase the loss no more than random directions do.

Each check returns a `MaskingFlag`; a report shows every flag raised and every check passed.

Defenses declare their gradient path (`robustlab.defenses.base`): the probe runs on the path
the attacks use (BPDA on) and, for a defense with non-differentiable steps, also on its true
gradients, so a defense whose only effect on attacks is to zero its gradients is named as
such ("defense masks its true gradients") while its robust accuracy comes from the
adaptive path.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.nn import functional as F

from robustlab.core.contract import RobustModel

SINGLE_STEP = {"fgsm", "rfgsm"}
ITERATIVE = {"pgd", "bim", "mim", "apgd", "apgd-t", "cw", "deepfool", "lbfgs", "jsma", "ka3"}
BLACK_BOX = {"square", "hsj", "transfer"}
TOLERANCE = 0.01  # one point of robust accuracy


@dataclass
class MaskingFlag:
    """One check's outcome: `raised` True means a symptom of gradient masking was seen."""

    model: str
    check: str
    raised: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _attack_name(label: str) -> str:
    return label.split("(")[0].lower()


def check_rows(rows: Sequence[dict[str, Any]], num_classes: dict[str, int] | None = None) -> list[MaskingFlag]:
    """Rule-based checks over `summarize` rows (grouped per model and defense)."""
    flags: list[MaskingFlag] = []
    by_model: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["eps"] >= 0 and r["attack"] != "worst-case":
            by_model[(r["model"], r.get("defense", "none"))].append(r)
    for (model, defense), mrows in by_model.items():
        name = model if defense == "none" else f"{model} [{defense}]"
        flags += _stronger_than(name, mrows, SINGLE_STEP, ITERATIVE, "single-step stronger than iterative")
        flags += _stronger_than(name, mrows, BLACK_BOX, ITERATIVE | SINGLE_STEP, "black-box stronger than white-box")
        flags.append(_monotone(name, mrows))
        k = (num_classes or {}).get(model)
        flags.append(_reaches_chance(name, mrows, k))
    return flags


def _stronger_than(model, rows, weak_kind, strong_kind, check) -> list[MaskingFlag]:
    """Flag eps values where an attack of `weak_kind` beats every attack of `strong_kind` by > 1 point."""
    per_eps: dict[float, dict[str, float]] = defaultdict(dict)
    for r in rows:
        per_eps[r["eps"]][r["attack"]] = r["robust_accuracy"]
    hits, compared = [], 0
    for eps, accs in sorted(per_eps.items()):
        weak = {a: v for a, v in accs.items() if _attack_name(a) in weak_kind}
        strong = {a: v for a, v in accs.items() if _attack_name(a) in strong_kind}
        if not weak or not strong or eps == 0:
            continue
        compared += 1
        best_weak = min(weak, key=weak.get)
        if weak[best_weak] < min(strong.values()) - TOLERANCE:
            hits.append(f"eps {eps:g}: {best_weak} {100 * weak[best_weak]:.1f}% < {100 * min(strong.values()):.1f}%")
    if not compared:
        return []
    if hits:
        return [MaskingFlag(model, check, True, "; ".join(hits))]
    return [MaskingFlag(model, check, False, f"not seen at {compared} eps values")]


def _monotone(model, rows) -> MaskingFlag:
    """Robust accuracy of each attack must not rise (beyond 1 point) as eps grows."""
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        series[r["attack"]].append((r["eps"], r["robust_accuracy"]))
    hits = []
    for attack, pts in series.items():
        pts.sort()
        for (e0, a0), (e1, a1) in zip(pts, pts[1:], strict=False):
            if a1 > a0 + TOLERANCE:
                hits.append(f"{attack}: {100 * a0:.1f}% at eps {e0:g} -> {100 * a1:.1f}% at eps {e1:g}")
    check = "robustness rises with eps"
    return MaskingFlag(model, check, bool(hits), "; ".join(hits) or "robust accuracy never rises with eps")


def _reaches_chance(model, rows, num_classes: int | None) -> MaskingFlag:
    """At Linf eps >= 0.5 any image can be turned into mid-grey: accuracy must fall to ~chance."""
    check = "accuracy does not reach chance at a huge budget"
    huge = [r for r in rows if r["eps"] >= 0.5 and "l2" not in r["attack"].lower()]
    if not huge:
        return MaskingFlag(model, check, False, "not checked: add an eps >= 0.5 (Linf) to the grid")
    chance = 1.0 / num_classes if num_classes else 0.1
    best = min(huge, key=lambda r: r["robust_accuracy"])
    raised = best["robust_accuracy"] > chance + 0.05
    return MaskingFlag(
        model,
        check,
        raised,
        f"{best['attack']} at eps {best['eps']:g}: {100 * best['robust_accuracy']:.1f}% (chance {100 * chance:.1f}%)",
    )


def gradient_probe(
    model: RobustModel, x: torch.Tensor, y: torch.Tensor, step: float = 2e-3, directions: int = 4, seed: int = 0
) -> dict[str, float]:
    """Statistics of the input gradients of the cross-entropy of `model` at (x, y).

    - ``zero_fraction``: samples whose gradient is exactly zero (or below 1e-12 in L2);
    - ``nonfinite_fraction``: samples with NaN or infinite gradient entries;
    - ``uninformative_fraction``: samples where a step of `step` (Linf) along sign(grad)
      increases the loss no more than the best of `directions` random sign steps.
    """
    k = model.num_classes
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x)[:, :k], y, reduction="none")
        (grad,) = torch.autograd.grad(loss.sum(), x)
    flat = grad.flatten(1)
    nonfinite = ~torch.isfinite(flat).all(dim=1)
    zero = flat.norm(dim=1) < 1e-12
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        base = loss.detach()
        along = F.cross_entropy(model((x + step * grad.sign()).clamp(0, 1))[:, :k], y, reduction="none") - base
        random_gain = torch.full_like(base, float("-inf"))
        for _ in range(directions):
            r = torch.randint(0, 2, x.shape, generator=g).to(x.device, x.dtype) * 2 - 1
            gain = F.cross_entropy(model((x + step * r).clamp(0, 1))[:, :k], y, reduction="none") - base
            random_gain = torch.maximum(random_gain, gain)
    uninformative = along <= random_gain
    return {
        "zero_fraction": float(zero.float().mean()),
        "nonfinite_fraction": float(nonfinite.float().mean()),
        "uninformative_fraction": float(uninformative.float().mean()),
    }


def defense_probe(model: RobustModel, x: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> dict[str, Any]:
    """`gradient_probe` on the attacked path, plus, for a model with BPDA steps, the same probe on
    its true gradients (keys ``true_*``) and the declared ``gradient_path``."""
    from robustlab.defenses.base import gradient_path_of, true_gradients

    probe: dict[str, Any] = dict(gradient_probe(model, x, y, **kwargs))
    path = gradient_path_of(model)
    has_bpda = any(isinstance(getattr(m, "bpda", None), bool) for m in model.modules())
    if path != "exact" or has_bpda:
        probe["gradient_path"] = path
        with true_gradients(model):
            true = gradient_probe(model, x, y, **kwargs)
        probe.update({f"true_{k}": v for k, v in true.items()})
    return probe


def check_probe(model_id: str, probe: dict[str, Any]) -> list[MaskingFlag]:
    """Flags from a `gradient_probe`: any zero/non-finite gradients, or mostly uninformative ones;
    for a defense probed on both paths (`defense_probe`), whether its true gradients are masked."""
    flags = []
    if "true_zero_fraction" in probe:
        masked = probe["true_zero_fraction"] + probe["true_nonfinite_fraction"] > 0.05 or (
            probe["true_uninformative_fraction"] > 0.5
        )
        flags.append(
            MaskingFlag(
                model_id,
                "defense masks its true gradients",
                masked,
                f"true gradients: {100 * probe['true_zero_fraction']:.1f}% zero, "
                f"{100 * probe['true_uninformative_fraction']:.1f}% no better than random; attacks use the "
                f"{probe['gradient_path']} path (robust accuracy measured through it)",
            )
        )
    return flags + [
        MaskingFlag(
            model_id,
            "zero or non-finite gradients",
            probe["zero_fraction"] + probe["nonfinite_fraction"] > 0.05,
            f"{100 * probe['zero_fraction']:.1f}% zero, {100 * probe['nonfinite_fraction']:.1f}% non-finite",
        ),
        MaskingFlag(
            model_id,
            "gradients no better than random directions",
            probe["uninformative_fraction"] > 0.5,
            f"{100 * probe['uninformative_fraction']:.1f}% of samples: sign(grad) step gains no more loss "
            "than a random sign step",
        ),
    ]
