"""Defended models beside their base: the defense-fit warning every path shows (`defend`,
`evaluate`, `run`, the report) for a defended model whose clean accuracy fell far below its
base's; the link from each defended model to its base in a run; and the comparison of their
robust accuracies on the same samples (less robust than the base; a single attack's number
above the base's ensemble number)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from robustlab.core.threat import AttackKind, Norm


def defense_fit_warning(accuracy: float | None, base_accuracy: float | None, num_classes: int) -> str | None:
    """A one-line warning when a defended model's clean test accuracy (fraction in [0, 1]; a
    rejection counts as wrong) lost more than half of what its undefended base has above chance
    (1 / num_classes): the defense did not fit, and its robust accuracy says nothing about the
    defense. None when it kept its accuracy, or when either accuracy is unknown."""
    if accuracy is None or base_accuracy is None or num_classes < 2:
        return None
    chance = 1.0 / num_classes
    if accuracy >= chance + 0.5 * max(0.0, base_accuracy - chance):
        return None
    return (f"clean accuracy {100 * accuracy:.1f}% against the undefended model's {100 * base_accuracy:.1f}% "
            f"(chance {100 * chance:.0f}%): the defense did not fit; its robust accuracy says nothing "
            "(try more epochs or the defense's other settings)")


def _resolved(path: Any) -> str | None:
    return str(Path(str(path)).resolve()) if path else None


def defended_models(models: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every defended model of a run, linked to its base: each {model, defense, name, base,
    base_name, clean_accuracy, base_clean_accuracy, warning}, where (model, defense) names its
    result rows and ``base`` the base's model key in this run (None when the base was not
    evaluated here). From the store meta "models": a defended model is an entry with
    ``defense_label``, whichever command built it; its base is ``base`` (the key `run`'s
    ``defenses:`` axis records) or the evaluated checkpoint `defend` built it from
    (``base_checkpoint``)."""
    by_checkpoint = {_resolved(m.get("checkpoint")): k for k, m in models.items()
                     if m.get("checkpoint") and not m.get("defense")}
    out = []
    for key, m in models.items():
        if not m.get("defense_label"):
            continue
        base = m.get("base") if m.get("base") in models else by_checkpoint.get(_resolved(m.get("base_checkpoint")))
        base_name = models[base].get("id", base) if base else Path(str(m.get("base_checkpoint") or "?")).name
        out.append({"model": key, "defense": m["defense_label"], "name": f"{m.get('id', key)} [{m['defense_label']}]",
                    "base": base, "base_name": base_name, "clean_accuracy": m.get("clean_accuracy"),
                    "base_clean_accuracy": m.get("base_clean_accuracy"), "warning": m.get("warning")})
    return out


def _per_eps(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, str, Norm, float], dict[str, Any]]:
    """Per (model, defense, samples, norm, eps > 0): the worst-case robust accuracy there and
    whether an ensemble member ran (``ensemble``)."""
    out: dict[tuple[str, str, str, Norm, float], dict[str, Any]] = {}
    for r in rows:
        if r.get("eps") is None or r["eps"] <= 0:
            continue
        k = (r["model"], r.get("defense", "none"), r.get("samples", ""), Norm.parse(r.get("norm", Norm.LINF)), r["eps"])
        cell = out.setdefault(k, {"robust_accuracy": 1.0, "ensemble": False, "attacks": []})
        cell["robust_accuracy"] = min(cell["robust_accuracy"], r["robust_accuracy"])
        if r["attack"] != "worst-case":
            cell["attacks"].append(r["attack"])
            cell["ensemble"] |= r.get("kind") == AttackKind.ENSEMBLE or str(r["attack"]).startswith("autoattack")
    return out


def compare_with_base(rows: Sequence[Mapping[str, Any]], defended: Sequence[Mapping[str, Any]],
                      tolerance: float = 0.01) -> list[dict[str, Any]]:
    """For each defended model whose base has rows on the same samples, norm and eps: the eps
    values where the defended model's worst case is below the base's by more than `tolerance`
    (``less_robust``: [{eps, defended, base}]), and the cells where the defended model met no
    ensemble member while its base did and still stands higher than the base under it
    (``single_above_ensemble``: the single attack's number is an upper bound, not a gain)."""
    cells = _per_eps(rows)
    out = []
    for d in defended:
        if not d.get("base"):
            continue
        less, single = [], []
        for (model, defense, samples, norm, eps), c in sorted(cells.items(), key=lambda kv: kv[0][4]):
            if (model, defense) != (d["model"], d["defense"]):
                continue
            b = cells.get((d["base"], "none", samples, norm, eps))
            if b is None:
                continue
            entry = {"eps": eps, "norm": norm, "defended": c["robust_accuracy"], "base": b["robust_accuracy"]}
            if c["robust_accuracy"] < b["robust_accuracy"] - tolerance:
                less.append(entry)
            if not c["ensemble"] and b["ensemble"] and c["robust_accuracy"] > b["robust_accuracy"] + tolerance:
                single.append({**entry, "attacks": c["attacks"]})
        if less or single:
            out.append({"model": d["model"], "defense": d["defense"], "name": d["name"], "base": d["base"],
                        "base_name": d["base_name"], "less_robust": less, "single_above_ensemble": single})
    return out


def less_robust_text(c: Mapping[str, Any]) -> str:
    """ "less robust than its base <b> at eps 0.1 (12.0% vs 30.0%), ..." (same samples)."""
    parts = [f"eps {e['eps']:g} ({100 * e['defended']:.1f}% vs {100 * e['base']:.1f}%)" for e in c["less_robust"]]
    return f"less robust than its undefended base {c['base_name']} at " + ", ".join(parts) + " (same samples)"
