"""Tables from the store: one row per (model, defense, attack, eps) plus the worst case per eps.

The CLI (`evaluate --json`) and the report both read their numbers from here, so they
always agree for the same run directory.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from robustlab.core.errors import InputError
from robustlab.evaluate.metrics import worst_case
from robustlab.store.results import ResultStore

WORST = "worst-case"


def _attack_label(attack_key: str) -> str:
    spec = json.loads(attack_key)
    name = spec.pop("name")
    shown = ", ".join(f"{k}={v}" for k, v in sorted(spec.items()))
    return f"{name}({shown})" if shown else name


def reduced_settings(attack_key: str) -> list[str]:
    """Settings of an attack spec weaker than its class's ``full_strength`` (e.g. an ensemble run
    with fewer steps than the standard one): ["steps=50 < 100", ...]; [] when at full strength
    or when the attack defines no full strength."""
    from robustlab.attacks.registry import get_attack_class

    spec = json.loads(attack_key)
    full = getattr(get_attack_class(spec["name"]), "full_strength", None) or {}
    return [f"{k}={spec[k]} < {v}" for k, v in full.items() if k in spec and spec[k] < v]


def summarize(store: ResultStore, models: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows for the table: each stored cell, then per (model, defense, subset, eps) the worst
    case over the fixed-budget attacks at that eps (attack = "worst-case"). ``training`` is
    the model's training recipe ("standard", "pgd-10 linf eps=0.1", ...; None when unknown)."""
    rows: list[dict[str, Any]] = []
    groups: dict[tuple, list] = defaultdict(list)
    recipes = {k: v.get("training") for k, v in (store.get_meta("models", {}) or {}).items()}
    for r in store.rows():
        if models is not None and r.key.model not in models:
            continue
        rows.append(
            {
                "model": r.key.model,
                "training": recipes.get(r.key.model),
                "defense": r.key.defense,
                "subset": r.key.subset,
                "attack": _attack_label(r.key.attack),
                "eps": r.key.eps,
                **r.metrics,
            }
        )
        reduced = reduced_settings(r.key.attack)
        if reduced:
            rows[-1]["reduced"] = reduced
        if r.key.eps >= 0:
            groups[(r.key.model, r.key.defense, r.key.subset, r.key.eps)].append(r.per_sample)
    for (model, defense, subset, eps), cells in groups.items():
        if len(cells) < 2:
            continue
        rows.append(
            {
                "model": model,
                "training": recipes.get(model),
                "defense": defense,
                "subset": subset,
                "attack": WORST,
                "eps": eps,
                **worst_case(cells),
            }
        )
    rows.sort(key=lambda r: (r["model"], r["defense"], r["subset"], r["eps"], r["attack"] == WORST))
    return rows


def distance_curves(
    store: ResultStore, models: list[str] | None = None, eps_grid: list[float] | None = None
) -> list[dict[str, Any]]:
    """Robust accuracy implied by each minimum-norm cell (stored once, eps = -1) at each eps.

    A sample survives eps when the model is right on it clean and the attack either failed
    or needed a perturbation larger than eps in the attack's own norm. The grid defaults to
    the eps values stored for the same model. Rows carry ``derived: True`` and the norm.
    """
    from robustlab.attacks.registry import get_attack_class, make_attack

    cells = [r for r in store.rows() if models is None or r.key.model in models]
    grids: dict[str, set[float]] = defaultdict(set)
    for r in cells:
        if r.key.eps >= 0:
            grids[r.key.model].add(r.key.eps)
    rows: list[dict[str, Any]] = []
    for r in cells:
        spec = json.loads(r.key.attack)
        name = spec.pop("name")
        if r.key.eps >= 0 or not get_attack_class(name).minimum_norm:
            continue
        norm = make_attack(name, **spec).norm
        if norm not in ("l2", "linf"):
            continue
        p = r.per_sample
        n = len(p["y"])
        for eps in sorted(eps_grid if eps_grid is not None else grids[r.key.model]):
            survived = sum(
                1 for i in range(n)
                if p["clean_pred"][i] == p["y"][i] and not (p["success"][i] and p[norm][i] <= eps + 1e-9)
            )
            rows.append({"model": r.key.model, "defense": r.key.defense, "subset": r.key.subset,
                         "attack": _attack_label(r.key.attack), "norm": norm, "eps": eps,
                         "robust_accuracy": survived / n if n else 0.0, "derived": True})
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


def probe_for(model, x, y, n: int = 256) -> dict[str, float]:
    """The gradient probe on the first `n` samples, through a defense's declared gradient path
    and its true one (`defense_probe`); needs no store."""
    from robustlab.evaluate.masking import defense_probe

    device = next(model.parameters()).device
    return defense_probe(model, x[:n].to(device), y[:n].to(device))


def record_probe(store: ResultStore, model_id: str, model, x, y, n: int = 256) -> dict[str, float]:
    """Run the gradient probe on the first `n` samples and keep it in the store's metadata."""
    probe = probe_for(model, x, y, n)
    probes = store.get_meta("probes", {}) or {}
    probes[model_id] = probe
    store.set_meta("probes", probes)
    return probe


def reference_eps(eps_grid: list[float]) -> float | None:
    """The eps at which adversarial confidence is reported: the largest grid value <= 0.1,
    else the smallest positive one (None when the grid has no positive eps)."""
    positive = sorted(e for e in eps_grid if e > 0)
    if not positive:
        return None
    small = [e for e in positive if e <= 0.1]
    return small[-1] if small else positive[0]


def record_identification(
    store: ResultStore, model_id: str, model, x, y, eps_grid: list[float], steps: int = 20
) -> dict[str, Any]:
    """`identification_for` once per model, kept in the store's metadata."""
    done = store.get_meta("identification", {}) or {}
    if model_id in done:
        return done[model_id]
    done[model_id] = identification_for(model, x, y, eps_grid, steps)
    store.set_meta("identification", done)
    return done[model_id]


def identification_for(model, x, y, eps_grid: list[float], steps: int = 20) -> dict[str, Any]:
    """Identification metrics (paper 002 eq. 3.1-3.3: accuracy, FMR, FNMR at the validation EER
    threshold) and confidence on clean inputs and under PGD (Linf, `steps` steps) at the
    reference eps. Needs no store (the experiment executors run it on workers)."""
    from robustlab.evaluate.identification import identification_metrics
    from robustlab.evaluate.runner import AttackSpec, run_attack

    eps = reference_eps(list(eps_grid))
    x_adv = None
    if eps is not None:
        x_adv = run_attack(AttackSpec("pgd", {"steps": steps}).build(eps), model, x, y).x_adv
    try:
        metrics = identification_metrics(model, x, y, x_adv=x_adv).to_dict()
    except InputError as exc:  # too few samples per class for verification pairs: accuracy only
        from robustlab.core.contract import batched_predict

        accuracy = float((batched_predict(model, x) == y.cpu()).float().mean())
        metrics = {"accuracy": accuracy, "skipped": f"verification metrics skipped: {exc}"}
    metrics["adversarial"] = f"pgd(steps={steps}) eps={eps:g}" if eps is not None else None
    return metrics
