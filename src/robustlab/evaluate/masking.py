"""Automatic gradient-masking checks (Athalye et al. 2018; Carlini et al. 2019, section 5).

Two sources of evidence:

- rules over the result rows of one model: a single-step attack beating the iterative
  ones, a black-box or transfer attack beating the white-box ones, robust accuracy rising
  with eps, and accuracy not reaching chance at a budget that allows any image;
- a probe of the model's input gradients: zero or non-finite gradients, and gradients that
  increase the loss no more than random directions do.

Each check returns a `MaskingFlag` in one of three states: passed, raised, or not run (with
why: no eps >= 0.5 in the grid, no single-step attack beside an iterative one, ...). A check
that did not run is never counted as passed (`masking_verdicts`).

Defenses declare their gradient path (`robustlab.defenses.base`): the probe runs on the path
the attacks use (BPDA on) and, for a defense with non-differentiable steps, also on its true
gradients, so a defense whose only effect on attacks is to zero its gradients is named as
such ("defense masks its true gradients") while its robust accuracy comes from the
adaptive path.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from robustlab.core.contract import RobustModel
from robustlab.core.threat import AttackKind, Norm

TOLERANCE = 0.01  # one point of robust accuracy
PASSED, RAISED, NOT_RUN = "passed", "raised", "not run"
TRUE_GRADIENTS = "defense masks its true gradients"
"""The check that exists only for a defense attacked through BPDA (its numbers come from the adaptive path)."""


@dataclass
class MaskingFlag:
    """One check's outcome: `raised` True means a symptom of gradient masking was seen;
    ``status`` is "passed", "raised" or "not run" (``message`` then says why)."""

    model: str
    check: str
    raised: bool
    message: str
    status: str = ""

    def __post_init__(self) -> None:
        if not self.status:
            self.status = RAISED if self.raised else PASSED
        if self.status not in (PASSED, RAISED, NOT_RUN) or (self.status == RAISED) != self.raised:
            raise ValueError(f"masking flag status {self.status!r} does not match raised={self.raised}")

    @classmethod
    def not_run(cls, model: str, check: str, why: str) -> MaskingFlag:
        """A check the rows could not decide (`why`: what would let it run)."""
        return cls(model, check, False, f"not run: {why}", NOT_RUN)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def masking_verdicts(flags: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model (as the checks name it): the checks that ran, those raised, those not run (with
    why) and a plain-language verdict that counts only the checks that ran. For a defense
    attacked through its BPDA path (it has the true-gradients check), the advice says the
    numbers already come from the adaptive path."""
    per: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in flags:
        per[f["model"]].append(f)
    out = {}
    for model, fl in per.items():
        status = [f.get("status") or (RAISED if f["raised"] else PASSED) for f in fl]
        raised = [f for f, s in zip(fl, status, strict=True) if s == RAISED]
        not_run = [f for f, s in zip(fl, status, strict=True) if s == NOT_RUN]
        ran = len(fl) - len(not_run)
        adaptive = any(f["check"] == TRUE_GRADIENTS for f in fl)
        if raised:
            others = [f for f in raised if f["check"] != TRUE_GRADIENTS]
            verdict = (f"Possible gradient masking: {len(raised)} of {ran} checks that ran raised "
                       f"({', '.join(f['check'] for f in raised)}).")
            if adaptive and not others:
                verdict += (" The true gradients are masked, as expected of a non-differentiable step; the "
                            "robust accuracy already comes from the adaptive (BPDA) path, which passed the "
                            "other checks.")
            elif adaptive:
                verdict += (" The robust accuracy comes from the adaptive (BPDA) path and may still overstate "
                            "the real robustness; confirm it with black-box or transfer attacks.")
            else:
                verdict += (" The robust accuracy may overstate the real robustness; confirm it with adaptive "
                            "or black-box attacks before trusting it.")
        elif ran:
            verdict = f"No sign of gradient masking in {ran} check{'s' if ran != 1 else ''} that ran."
        else:
            verdict = "No gradient-masking check could run."
        if not_run:
            verdict += f" {len(not_run)} not run: " + "; ".join(
                f"{f['check']} ({f['message'].removeprefix('not run: ')})" for f in not_run) + "."
        out[model] = {"checks": ran, "passed": ran - len(raised), "raised": [f["check"] for f in raised],
                      "not_run": {f["check"]: f["message"].removeprefix("not run: ") for f in not_run},
                      "adaptive": adaptive, "verdict": verdict}
    return out


KindTest = Callable[[AttackKind], bool]


def _single_step(kind: AttackKind) -> bool:
    return kind is AttackKind.SINGLE_STEP


def _iterative(kind: AttackKind) -> bool:
    return kind is AttackKind.ITERATIVE


def _black_box(kind: AttackKind) -> bool:
    return kind.black_box


def _white_box(kind: AttackKind) -> bool:
    return kind.white_box


def _kinds(row: dict[str, Any]) -> set[AttackKind]:
    """The attack kinds a row stands for: its own kind, plus its members' for an ensemble
    (an ensemble is at least as strong as each of its members). Each comes from the attack
    class (``Attack.kind``): stored in the row as its string when the cell ran, or read from the
    class the row names when the row carries none (a row built by hand)."""
    kind = row.get("kind")
    if kind is None:
        from robustlab.attacks.registry import get_attack_class

        kind = get_attack_class(row["attack"].split("(")[0]).kind
    return {AttackKind(kind), *(AttackKind(k) for k in row.get("member_kinds", []))}


def check_rows(rows: Sequence[dict[str, Any]], num_classes: dict[str, int] | None = None) -> list[MaskingFlag]:
    """Rule-based checks over `summarize` rows, per model, defense, sample set and norm (a Linf
    attack is never compared with an L2 one). Attack kinds come from the rows (declared by
    each attack); an ensemble counts as each of its members' kinds, and its black-box
    members' wins over its white-box members are checked too."""
    flags: list[MaskingFlag] = []
    by_model: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r.get("eps") is not None and r["attack"] != "worst-case":
            by_model[(r["model"], r.get("defense", "none"), r.get("samples", ""))].append(r)
    names = defaultdict(set)
    for model, defense, samples in by_model:
        names[(model, defense)].add(samples)
    for (model, defense, samples), mrows in by_model.items():
        name = model if defense == "none" else f"{model} [{defense}]"
        if len(names[(model, defense)]) > 1:
            name += f" on {samples}"
        by_norm: dict[Norm, list[dict[str, Any]]] = defaultdict(list)
        for r in mrows:
            by_norm[Norm.parse(r.get("norm", Norm.LINF))].append(r)
        single_check, black_check = "single-step stronger than iterative", "black-box stronger than white-box"
        single = [f for group in by_norm.values() for f in _stronger_than(name, group, _single_step, _iterative,
                                                                          single_check)]
        flags += _merge(name, single or [MaskingFlag.not_run(
            name, single_check, "needs a single-step attack (fgsm) and an iterative one at the same eps > 0")],
            single_check)
        black = [f for group in by_norm.values() for f in _stronger_than(name, group, _black_box, _white_box,
                                                                         black_check)]
        flags += _merge(name, black + _ensemble_members(name, mrows) or [MaskingFlag.not_run(
            name, black_check, "needs a black-box or transfer attack (square, autoattack) beside a white-box one")],
            black_check)
        flags.append(_monotone(name, mrows))
        k = (num_classes or {}).get(model)
        flags.append(_reaches_chance(name, by_norm.get(Norm.LINF, []), k))
    return flags


def _merge(model: str, flags: list[MaskingFlag], check: str) -> list[MaskingFlag]:
    """One flag per check: raised if any part raised, with every part's message."""
    if not flags:
        return []
    raised = [f for f in flags if f.raised]
    if raised:
        return [MaskingFlag(model, check, True, "; ".join(f.message for f in raised))]
    ran = [f for f in flags if f.status != NOT_RUN]
    if not ran:
        return [flags[0]]
    return [MaskingFlag(model, check, False, "; ".join(f.message for f in ran))]


def _ensemble_members(model: str, rows: list[dict[str, Any]]) -> list[MaskingFlag]:
    """Inside an ensemble, black-box members run on what the white-box members left standing:
    any share of samples they still fool beyond the tolerance is black-box beating white-box."""
    out = []
    for r in rows:
        members = r.get("member_success")
        if not members or not r.get("n") or r["eps"] == 0:
            continue
        white = any(AttackKind(m["kind"]).white_box for m in members)
        black = [m for m in members if AttackKind(m["kind"]).black_box]
        if not white or not black:
            continue
        wins = sum(m["count"] for m in black)
        share = wins / r["n"]
        label = ", ".join(m["label"] for m in black)
        out.append(MaskingFlag(model, "black-box stronger than white-box", share > TOLERANCE,
                               f"{r['attack']} eps {r['eps']:g}: {label} fooled {wins} of {r['n']} samples "
                               "its white-box members could not"))
    return out


def _stronger_than(model: str, rows: list[dict[str, Any]], weak: KindTest, strong: KindTest,
                   check: str) -> list[MaskingFlag]:
    """Flag eps values where an attack whose kinds are all `weak` beats every attack with a `strong`
    kind by > 1 point (rows of one norm)."""
    per_eps: dict[float, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        per_eps[r["eps"]].append(r)
    hits, compared = [], 0
    for eps, group in sorted(per_eps.items()):
        weak_acc = {r["attack"]: r["robust_accuracy"] for r in group if all(map(weak, _kinds(r)))}
        strong_acc = {r["attack"]: r["robust_accuracy"] for r in group if any(map(strong, _kinds(r)))}
        if not weak_acc or not strong_acc or eps == 0:
            continue
        compared += 1
        best = min(weak_acc, key=weak_acc.__getitem__)
        if weak_acc[best] < min(strong_acc.values()) - TOLERANCE:
            hits.append(f"eps {eps:g}: {best} {100 * weak_acc[best]:.1f}% < {100 * min(strong_acc.values()):.1f}%")
    if not compared:
        return []
    if hits:
        return [MaskingFlag(model, check, True, "; ".join(hits))]
    return [MaskingFlag(model, check, False, f"not seen at {compared} eps values")]


def _monotone(model, rows) -> MaskingFlag:
    """Robust accuracy of each attack must not rise (beyond 1 point) as eps grows."""
    series: dict[tuple[str, Norm], list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        series[(r["attack"], Norm.parse(r.get("norm", Norm.LINF)))].append((r["eps"], r["robust_accuracy"]))
    hits = []
    for (attack, _), pts in series.items():
        pts.sort()
        for (e0, a0), (e1, a1) in zip(pts, pts[1:], strict=False):
            if a1 > a0 + TOLERANCE:
                hits.append(f"{attack}: {100 * a0:.1f}% at eps {e0:g} -> {100 * a1:.1f}% at eps {e1:g}")
    check = "robustness rises with eps"
    if not any(len(pts) > 1 for pts in series.values()):
        return MaskingFlag.not_run(model, check, "needs an attack at two or more eps values")
    return MaskingFlag(model, check, bool(hits), "; ".join(hits) or "robust accuracy never rises with eps")


def _reaches_chance(model, rows, num_classes: int | None) -> MaskingFlag:
    """At Linf eps >= 0.5 any image can be turned into mid-grey: accuracy must fall to ~chance
    (`rows`: the Linf rows of one model)."""
    check = "accuracy does not reach chance at a huge budget"
    huge = [r for r in rows if r["eps"] >= 0.5]
    if not huge:
        return MaskingFlag.not_run(model, check, "add an eps >= 0.5 (Linf) to the grid")
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
    model: RobustModel,
    x: torch.Tensor,
    y: torch.Tensor,
    step: float = 2e-3,
    directions: int = 4,
    seed: int = 0,
    loss: str = "margin",
) -> dict[str, Any]:
    """Statistics of the input gradients of an attack loss of `model` at (x, y).

    ``loss`` is "margin" (default: max_{j != y} z_j - z_y, which does not saturate, so a
    confident model with large logits, e.g. ArcFace's scale-64 cosines, still has informative
    gradients), "dlr" (scale-invariant) or "ce" (saturates: float32 softmax rounds to one-hot).

    - ``zero_fraction``: samples whose gradient is exactly zero (or below 1e-12 in L2);
    - ``nonfinite_fraction``: samples with NaN or infinite gradient entries;
    - ``uninformative_fraction``: samples where a step of `step` (Linf) along sign(grad)
      increases the loss no more than the best of `directions` random sign steps.
    """
    from robustlab.attacks.objectives import get_attack_loss

    k = model.num_classes
    loss_fn = get_attack_loss(loss)
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        value = loss_fn(model(x), y, None, k)
        (grad,) = torch.autograd.grad(value.sum(), x)
    flat = grad.flatten(1)
    nonfinite = ~torch.isfinite(flat).all(dim=1)
    zero = flat.norm(dim=1) < 1e-12
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        base = value.detach()
        along = loss_fn(model((x + step * grad.sign()).clamp(0, 1)), y, None, k) - base
        random_gain = torch.full_like(base, float("-inf"))
        for _ in range(directions):
            r = torch.randint(0, 2, x.shape, generator=g).to(x.device, x.dtype) * 2 - 1
            gain = loss_fn(model((x + step * r).clamp(0, 1)), y, None, k) - base
            random_gain = torch.maximum(random_gain, gain)
    uninformative = along <= random_gain
    return {
        "zero_fraction": float(zero.float().mean()),
        "nonfinite_fraction": float(nonfinite.float().mean()),
        "uninformative_fraction": float(uninformative.float().mean()),
        "loss": loss,
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


SINGLE_ABOVE_BASE = "single attack above the base's ensemble"


def check_against_base(rows: Sequence[dict[str, Any]], defended: Sequence[dict[str, Any]]) -> list[MaskingFlag]:
    """For each defended model (`robustlab.evaluate.defended.defended_models`): raised when, at some
    eps, it met no ensemble member and its robust accuracy under those attacks stands above its
    undefended base's under the ensemble (same samples): the gain may be the weaker attack's.
    Not run when its base has no rows in the run."""
    from robustlab.evaluate.defended import compare_with_base

    found = {(c["model"], c["defense"]): c for c in compare_with_base(rows, defended)}
    flags = []
    for d in defended:
        name = f"{d['model']} [{d['defense']}]"
        c = found.get((d["model"], d["defense"]))
        if not d.get("base") or not any(r["model"] == d["base"] and r.get("defense", "none") == "none"
                                         for r in rows):
            flags.append(MaskingFlag.not_run(name, SINGLE_ABOVE_BASE,
                                             f"its base {d['base_name']} is not evaluated in this run"))
        elif c and c["single_above_ensemble"]:
            hits = "; ".join(f"eps {e['eps']:g}: {100 * e['defended']:.1f}% under {', '.join(e['attacks'])} > "
                             f"base {100 * e['base']:.1f}% under the ensemble" for e in c["single_above_ensemble"])
            flags.append(MaskingFlag(name, SINGLE_ABOVE_BASE, True, hits + ": run the ensemble on the defended model"))
        else:
            flags.append(MaskingFlag(name, SINGLE_ABOVE_BASE, False, f"not seen against {d['base_name']}"))
    return flags
