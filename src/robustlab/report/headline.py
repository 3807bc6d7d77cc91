"""The report's headline table: one row per (model, defense) with clean accuracy, the worst-case
robust accuracy at each eps, and the attack that was strongest there.

Values come straight from `robustlab.evaluate.summarize` rows: the worst-case row when more
than one fixed-budget attack ran at that eps, else the one attack's row. So the table equals
`evaluate --json`'s worst-case rows by construction (and a test checks it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from robustlab.evaluate.summary import WORST

ENSEMBLES = {"autoattack"}
"""Attack names that count as the strong ensemble in the `ensemble` field of a cell."""


def recipe_text(train: Mapping[str, Any] | None) -> str:
    """A short description of a training config (TrainConfig.to_dict()): "adam lr 0.003, 20 ep, bs 64"."""
    if not train:
        return "-"
    lr = train.get("lr")
    parts = [f"{train.get('optimizer') or 'auto'}" + (f" lr {lr:g}" if isinstance(lr, float | int) else "")]
    if train.get("epochs") is not None:
        parts.append(f"{train['epochs']} ep")
    if train.get("batch_size") is not None:
        parts.append(f"bs {train['batch_size']}")
    if train.get("objective"):
        parts.append(str(train["objective"]))
    if train.get("adv"):
        from robustlab.train.adversarial.config import recipe_label  # the adversarial recipe's own name

        parts.append(recipe_label(dict(train)))
    return ", ".join(parts)


def _attack_name(label: str) -> str:
    return label.split("(")[0]


def headline_rows(rows: Sequence[dict[str, Any]], models: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of the headline table, in the order the models first appear in `rows`.

    Each: model, defense, subset, recipe, clean_accuracy, n, and ``cells``: one per eps >= 0 with
    robust_accuracy (worst case), strongest (attack labels reaching the minimum), attacks (how
    many ran), ensemble ("full", "reduced" or "none") and reduced (the weakened settings).
    """
    groups: dict[tuple[str, str, str], dict[float, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["eps"] is not None:
            groups[(r["model"], r.get("defense", "none"), r.get("subset", "test"))][r["eps"]].append(r)
    out = []
    for (model, defense, subset), by_eps in groups.items():
        cells = []
        clean = None
        n = None
        for eps in sorted(by_eps):
            members = [r for r in by_eps[eps] if r["attack"] != WORST]
            worst = next((r for r in by_eps[eps] if r["attack"] == WORST), None) or members[0]
            low = min(r["robust_accuracy"] for r in members)
            ensembles = [r for r in members if _attack_name(r["attack"]) in ENSEMBLES]
            reduced = sorted({s for r in ensembles for s in r.get("reduced", [])})
            cells.append({
                "eps": eps,
                "robust_accuracy": worst["robust_accuracy"],
                "ci_low": worst.get("ci_low"),  # Clopper-Pearson 95% over the cell's n samples
                "ci_high": worst.get("ci_high"),
                "strongest": [r["attack"] for r in members if r["robust_accuracy"] == low],
                "attacks": len(members),
                "ensemble": "none" if not ensembles else ("reduced" if reduced else "full"),
                "reduced": reduced,
            })
            clean = worst["clean_accuracy"] if clean is None else clean
            n = worst.get("n") if n is None else n
        meta = models.get(model, {})
        out.append({
            "model": model,
            "defense": defense,
            "subset": subset,
            "recipe": recipe_text(meta.get("train")),
            "clean_accuracy": clean,
            "n": n,
            "cells": cells,
        })
    order = {k: i for i, k in enumerate(models)}
    out.sort(key=lambda h: order.get(h["model"], len(order)))
    return out
