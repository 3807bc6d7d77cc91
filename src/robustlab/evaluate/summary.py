"""Tables from the store: one row per (model, defense, attack, eps) plus the worst case per eps.

The CLI (`evaluate --json`) and the report both read their numbers from here, so they
always agree for the same run directory.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from robustlab.evaluate.metrics import worst_case
from robustlab.store.results import ResultStore

WORST = "worst-case"


def _attack_label(attack_key: str) -> str:
    spec = json.loads(attack_key)
    name = spec.pop("name")
    shown = ", ".join(f"{k}={v}" for k, v in sorted(spec.items()))
    return f"{name}({shown})" if shown else name


def summarize(store: ResultStore, models: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows for the table: each stored cell, then per (model, defense, subset, eps) the worst
    case over the fixed-budget attacks at that eps (attack = "worst-case")."""
    rows: list[dict[str, Any]] = []
    groups: dict[tuple, list] = defaultdict(list)
    for r in store.rows():
        if models is not None and r.key.model not in models:
            continue
        rows.append(
            {
                "model": r.key.model,
                "defense": r.key.defense,
                "subset": r.key.subset,
                "attack": _attack_label(r.key.attack),
                "eps": r.key.eps,
                **r.metrics,
            }
        )
        if r.key.eps >= 0:
            groups[(r.key.model, r.key.defense, r.key.subset, r.key.eps)].append(r.per_sample)
    for (model, defense, subset, eps), cells in groups.items():
        if len(cells) < 2:
            continue
        rows.append(
            {
                "model": model,
                "defense": defense,
                "subset": subset,
                "attack": WORST,
                "eps": eps,
                **worst_case(cells),
            }
        )
    rows.sort(key=lambda r: (r["model"], r["defense"], r["subset"], r["eps"], r["attack"] == WORST))
    return rows


def masking_flags(store: ResultStore, models: list[str] | None = None) -> list[dict[str, Any]]:
    """Every gradient-masking check for the models in `store`: rules over the rows plus the
    gradient probes recorded by `record_probe`."""
    from robustlab.evaluate.masking import check_probe, check_rows

    meta = store.get_meta("models", {}) or {}
    num_classes = {k: v.get("config", {}).get("num_classes") for k, v in meta.items()}
    flags = check_rows(summarize(store, models), num_classes)
    for model, probe in (store.get_meta("probes", {}) or {}).items():
        if models is None or model in models:
            flags += check_probe(model, probe)
    return [f.to_dict() for f in flags]


def record_probe(store: ResultStore, model_id: str, model, x, y, n: int = 256) -> dict[str, float]:
    """Run the gradient probe on the first `n` samples and keep it in the store's metadata."""
    from robustlab.evaluate.masking import gradient_probe

    device = next(model.parameters()).device
    probe = gradient_probe(model, x[:n].to(device), y[:n].to(device))
    probes = store.get_meta("probes", {}) or {}
    probes[model_id] = probe
    store.set_meta("probes", probes)
    return probe
