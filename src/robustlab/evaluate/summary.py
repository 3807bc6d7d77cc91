"""Tables from the store: one row per stored cell plus the worst case per threat model, the
identification metrics and the gradient probes, all read from keyed rows.

The CLI (`evaluate --json`) and the report both read their numbers from here, so they
always agree for the same run directory. Cells on different samples, data sets or norms
are never combined: the worst case is taken per (model, defense, data, samples, norm, eps).
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from typing import Any

import torch

from robustlab.attacks.autoattack import protocol_of
from robustlab.core.contract import RobustModel, batched_predict
from robustlab.core.digest import canonical, model_digest
from robustlab.core.errors import InputError
from robustlab.core.stats import mcnemar, rate
from robustlab.core.threat import Norm
from robustlab.evaluate.metrics import worst_case
from robustlab.evaluate.runner import AttackSpec, eval_mode, plan_cells, run_attack, spec_label
from robustlab.evaluate.samples import EvalSet
from robustlab.store.results import ResultKey, ResultRow, ResultStore

WORST = "worst-case"
PROBE_SPEC: dict[str, Any] = {"name": "gradient-probe", "loss": "margin", "n": 256, "step": 2e-3, "directions": 4,
                              "seed": 0}
"""The gradient probe every evaluation records (see `robustlab.evaluate.masking.gradient_probe`)."""


def _data_name(key: ResultKey) -> str:
    return str(json.loads(key.data).get("name", "")) if key.data else ""


def reduced_settings(attack_key: str) -> list[str]:
    """Settings of an attack spec weaker than its class's ``full_strength`` (e.g. an ensemble run
    with fewer steps than the standard one): ["steps=50 < 100", ...]; [] when at full strength
    or when the attack defines no full strength."""
    from robustlab.attacks.registry import get_attack_class

    spec = json.loads(attack_key)
    full = getattr(get_attack_class(spec["name"]), "full_strength", None) or {}
    return [f"{k}={spec[k]} < {v}" for k, v in full.items() if k in spec and spec[k] < v]


def intervals(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The Clopper-Pearson 95% interval (`robustlab.core.stats.rate`) of each rate of a cell
    or worst-case row: robust and clean accuracy over its ``n`` samples, the detection rate over
    the initially correct ones (empty when the row has no ``n``)."""
    n = metrics.get("n")
    if not isinstance(n, int) or n <= 0:
        return {}
    out = {}
    for name in ("robust_accuracy", "clean_accuracy"):
        if metrics.get(name) is not None:
            out[name] = rate(int(round(metrics[name] * n)), n)
    if metrics.get("clean_accuracy") is not None and isinstance(metrics.get("detected"), int):
        correct = int(round(metrics["clean_accuracy"] * n))
        if correct:
            out["detection_rate"] = rate(min(metrics["detected"], correct), correct)
    return out


def with_intervals(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with ``intervals`` (see `intervals`) and its robust accuracy's ``ci_low`` / ``ci_high``."""
    iv = intervals(row)
    if iv:
        row["intervals"] = iv
        if "robust_accuracy" in iv:
            row["ci_low"], row["ci_high"] = iv["robust_accuracy"]["ci_low"], iv["robust_accuracy"]["ci_high"]
    return row


def _row(r: ResultRow, recipes: dict[str, Any] | None = None) -> dict[str, Any]:
    metrics = dict(r.metrics)
    label = metrics.pop("label", None) or spec_label(json.loads(r.key.attack))
    row = {
        "model": r.key.model,
        "training": (recipes or {}).get(r.key.model),
        "defense": r.key.defense,
        "subset": r.key.subset,
        "data": _data_name(r.key),
        "samples": r.key.samples,
        "attack": label,
        "norm": r.key.norm.value,
        "eps": r.key.eps,
        "batch": r.key.batch,
        **metrics,
    }
    reduced = reduced_settings(r.key.attack)
    if reduced:
        row["reduced"] = reduced
    protocol = protocol_of(label)
    if protocol:
        row["protocol"] = protocol  # which ensemble: robustlab's, or AutoAttack's standard / plus / rand
    return with_intervals(row)


def _sort_key(r: dict[str, Any]) -> tuple:
    eps = r["eps"]
    return (r["model"], r["defense"], r["data"], r["samples"], r["norm"], eps is None, eps or 0.0,
            r["attack"] == WORST)


def summarize(
    store: ResultStore, models: list[str] | None = None, samples: str | None = None
) -> list[dict[str, Any]]:
    """Rows for the table: each stored cell (of `models`, on the sample set `samples` when given),
    then per (model, defense, data, samples, norm, eps) the worst case over the fixed-budget
    attacks there (attack = "worst-case"). Minimum-norm cells have ``eps`` None. ``training`` is
    the model's training recipe ("standard", "pgd-10 linf eps=0.1", ...; None when unknown).
    Every row with ``n`` carries ``intervals`` (Clopper-Pearson 95% of each rate) and its robust
    accuracy's ``ci_low`` / ``ci_high``."""
    rows: list[dict[str, Any]] = []
    groups: dict[tuple, list] = defaultdict(list)
    recipes = {k: v.get("training") for k, v in (store.get_meta("models", {}) or {}).items()}
    for r in store.rows():
        if (models is not None and r.key.model not in models) or (samples is not None and r.key.samples != samples):
            continue
        row = _row(r, recipes)
        rows.append(row)
        if r.key.eps is not None:
            groups[(row["model"], row["defense"], row["subset"], row["data"], row["samples"], row["norm"],
                    r.key.eps)].append(r.per_sample)
    for (model, defense, subset, data, sample_set, norm, eps), cells in groups.items():
        if len(cells) < 2:
            continue
        rows.append({"model": model, "training": recipes.get(model), "defense": defense, "subset": subset,
                     "data": data, "samples": sample_set, "attack": WORST, "norm": norm, "eps": eps,
                     "kind": "worst-case", **worst_case(cells)})
        with_intervals(rows[-1])
    rows.sort(key=_sort_key)
    return rows


OutcomeKey = tuple[str, str, str, float]
"""(model key, defense, samples digest, eps): one worst case per sample."""


def worst_outcomes(store: ResultStore, models: list[str] | None = None) -> dict[OutcomeKey, list[bool]]:
    """Per (model, defense, samples, eps) whether each sample is right under every fixed-budget
    attack stored there (transfer rows included): the per-sample worst case behind `summarize`'s
    worst-case rows, for paired comparisons."""
    out: dict[OutcomeKey, list[bool]] = {}
    for r in store.rows():
        if r.key.eps is None or (models is not None and r.key.model not in models):
            continue
        p = r.per_sample  # as `worst_case`: right clean and after the attack
        right = [a == y == c for a, y, c in zip(p["adv_pred"], p["y"], p["clean_pred"], strict=True)]
        key = (r.key.model, r.key.defense, r.key.samples, float(r.key.eps))
        prev = out.get(key)
        out[key] = right if prev is None else [a and b for a, b in zip(prev, right, strict=True)]
    return out


def compare(
    store: ResultStore, first: str, second: str, eps: float, *, defense: str = "none",
    second_defense: str | None = None, samples: str | None = None,
) -> dict[str, Any]:
    """Paired comparison of the worst-case robust accuracy of two models (keys as stored) at
    `eps` on the same samples: exact McNemar p-value and the difference (first - second) with
    its exact conditional interval (`robustlab.core.stats.mcnemar`). Raises `InputError`
    when the two were not evaluated on one common sample set at `eps`."""
    outcomes = worst_outcomes(store, [first, second])
    other = defense if second_defense is None else second_defense
    sets = [s for (m, d, s, e) in outcomes if (m, d, e) == (first, defense, float(eps))
            and (second, other, s, e) in outcomes and (samples is None or s == samples)]
    if not sets:
        raise InputError(f"{first} and {second} share no evaluated sample set at eps {eps:g}: "
                         "a paired comparison needs the same samples")
    s = sets[0]
    return {"first": first, "second": second, "eps": float(eps), "samples": s,
            **mcnemar(outcomes[(first, defense, s, float(eps))], outcomes[(second, other, s, float(eps))])}


def paired_comparisons(store: ResultStore, models: list[str] | None = None) -> list[dict[str, Any]]:
    """`compare` for every two (model, defense) rows evaluated on the same samples at each eps > 0
    (a run without an experiment index: every pair). Each: data, eps, first / second (model
    keys), their defenses, and the `mcnemar` fields."""
    outcomes = worst_outcomes(store, models)
    data = {r.key.samples: _data_name(r.key) for r in store.rows()}
    groups: dict[tuple[str, float], list[tuple[str, str]]] = defaultdict(list)
    for model, defense, samples, eps in outcomes:
        if eps > 0:
            groups[(samples, eps)].append((model, defense))
    out = []
    for (samples, eps), members in sorted(groups.items(), key=lambda kv: kv[0][1]):
        for (a, da), (b, db) in itertools.combinations(members, 2):
            out.append({"data": data.get(samples, ""), "eps": eps, "first": a, "first_defense": da, "second": b,
                        "second_defense": db,
                        **mcnemar(outcomes[(a, da, samples, eps)], outcomes[(b, db, samples, eps)])})
    return out


def distance_curves(
    store: ResultStore, models: list[str] | None = None, eps_grid: list[float] | None = None
) -> list[dict[str, Any]]:
    """Robust accuracy implied by each minimum-norm cell (stored once, eps None) at each eps.

    A sample survives eps when the model is right on it clean and the attack either failed
    or needed a perturbation larger than eps in the attack's own norm. The grid defaults to
    the eps values stored for the same model and samples. Rows carry ``derived: True`` and the norm.
    """
    cells = [r for r in store.rows() if models is None or r.key.model in models]
    grids: dict[tuple[str, str], set[float]] = defaultdict(set)
    for r in cells:
        if r.key.eps is not None:
            grids[(r.key.model, r.key.samples)].add(r.key.eps)
    rows: list[dict[str, Any]] = []
    for r in cells:
        norm = r.key.norm
        if not r.key.budget.minimum_norm or norm not in (Norm.L2, Norm.LINF):
            continue
        p = r.per_sample
        n = len(p["y"])
        base = _row(r)
        for eps in sorted(eps_grid if eps_grid is not None else grids[(r.key.model, r.key.samples)]):
            survived = sum(
                1 for i in range(n)
                if p["clean_pred"][i] == p["y"][i] and not (p["success"][i] and p[norm][i] <= eps + 1e-9)
            )
            rows.append({k: base[k] for k in ("model", "defense", "subset", "data", "samples", "attack")}
                        | {"norm": norm.value, "eps": eps, "robust_accuracy": survived / n if n else 0.0,
                           "derived": True})
    return rows


def _record_key(kind: str, spec: dict[str, Any], eps: float | None, norm: Norm, model_id: str, digest: str,
                data: EvalSet, defense: str, batch: str) -> ResultKey:
    return ResultKey(model=model_id, defense=defense, attack=canonical(spec), eps=eps, subset=data.subset,
                     norm=norm, model_digest=digest, data=data.data_key, samples=data.digest, batch=batch,
                     kind=kind)


def probe_key(model_id: str, digest: str, data: EvalSet, defense: str = "none", n: int = 256) -> ResultKey:
    """The key of a model's gradient-probe row (`digest`: `model_digest` of its weights)."""
    # the probe compares a Linf sign step of the gradient with random sign steps
    return _record_key("probe", {**PROBE_SPEC, "n": n}, None, Norm.LINF, model_id, digest, data, defense,
                       "independent")


def probe_for(model: RobustModel, x: torch.Tensor, y: torch.Tensor, n: int = 256) -> dict[str, Any]:
    """The gradient probe (`PROBE_SPEC`) on the first `n` samples, through a defense's declared
    gradient path and its true one (`defense_probe`); needs no store."""
    from robustlab.evaluate.masking import defense_probe

    with eval_mode(model):
        device = next(model.parameters()).device
        return defense_probe(model, x[:n].to(device), y[:n].to(device), step=PROBE_SPEC["step"],
                             directions=PROBE_SPEC["directions"], seed=PROBE_SPEC["seed"], loss=PROBE_SPEC["loss"])


def record_probe(
    store: ResultStore, model_id: str, model: RobustModel, x: torch.Tensor | None = None,
    y: torch.Tensor | None = None, n: int = 256, *, data: EvalSet | None = None, defense: str = "none",
) -> dict[str, Any]:
    """The gradient probe on the first `n` samples of `data` (or of x, y), stored as a keyed row
    (computed once per model and sample set)."""
    data = data if data is not None else EvalSet(x, y)  # type: ignore[arg-type]
    key = probe_key(model_id, model_digest(model), data, defense, n)
    stored = store.get(key)
    if stored is not None:
        return stored.metrics
    probe = probe_for(model, data.x, data.y, n)
    store.put(key, probe)
    return probe


def reference_eps(eps_grid: list[float]) -> float | None:
    """The eps at which adversarial confidence is reported: the largest grid value <= 0.1,
    else the smallest positive one (None when the grid has no positive eps)."""
    positive = sorted(e for e in eps_grid if e > 0)
    if not positive:
        return None
    small = [e for e in positive if e <= 0.1]
    return small[-1] if small else positive[0]


def _identification_cell(eps_grid: list[float], steps: int):
    eps = reference_eps(list(eps_grid or []))
    return plan_cells([AttackSpec("pgd", {"steps": steps})], [eps])[0] if eps is not None else None


def identification_key(
    model_id: str, digest: str, data: EvalSet, eps_grid: list[float], defense: str = "none",
    batch_size: int = 256, steps: int = 20,
) -> ResultKey:
    """The key of a model's identification row: keyed like the attack cells (weights digest, data,
    samples, the PGD's resolved spec, its eps, the batch size unless batch-independent)."""
    cell = _identification_cell(eps_grid, steps)
    spec = {"name": "identification", "seed": 0, "adversarial": json.loads(cell.attack_key) if cell else None}
    batch = "independent" if cell is None or cell.attack.batch_independent else str(batch_size)
    norm = cell.attack.norm if cell else Norm.LINF
    return _record_key("identification", spec, cell.eps if cell else None, norm, model_id, digest, data, defense,
                       batch)


def identification_for(
    model: RobustModel, x: torch.Tensor, y: torch.Tensor, eps_grid: list[float], steps: int = 20,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Identification metrics (paper 002 eq. 3.1-3.3: accuracy, FMR, FNMR at the validation EER
    threshold) and confidence on clean inputs and under PGD (Linf, `steps` steps) at the
    reference eps. Needs no store (the experiment executors run it on workers)."""
    from robustlab.evaluate.identification import identification_metrics

    cell = _identification_cell(eps_grid, steps)
    with eval_mode(model):
        x_adv = run_attack(cell.attack, model, x, y, batch_size).x_adv if cell is not None else None
        try:
            metrics: dict[str, Any] = identification_metrics(model, x, y, x_adv=x_adv).to_dict()
        except InputError as exc:  # too few samples per class for verification pairs: accuracy only
            accuracy = float((batched_predict(model, x) == y.cpu()).float().mean())
            metrics = {"accuracy": accuracy, "skipped": f"verification metrics skipped: {exc}"}
    metrics["adversarial"] = f"pgd(steps={steps}) eps={cell.eps:g}" if cell is not None else None
    return metrics


def record_identification(
    store: ResultStore, model_id: str, model: RobustModel, x: torch.Tensor | None = None,
    y: torch.Tensor | None = None, eps_grid: list[float] | None = None, steps: int = 20, *,
    data: EvalSet | None = None, defense: str = "none", batch_size: int = 256,
) -> dict[str, Any]:
    """`identification_for`, stored as a row keyed by `identification_key`, so it is never stale."""
    data = data if data is not None else EvalSet(x, y)  # type: ignore[arg-type]
    grid = list(eps_grid or [])
    key = identification_key(model_id, model_digest(model), data, grid, defense, batch_size, steps)
    stored = store.get(key)
    if stored is not None:
        return stored.metrics
    metrics = identification_for(model, data.x, data.y, grid, steps, batch_size)
    store.put(key, metrics)
    return metrics


def _by_model(
    store: ResultStore, kind: str, models: list[str] | None, samples: str | None = None
) -> dict[str, dict[str, Any]]:
    """Rows of `kind` per model id (on the sample set `samples` when given); a model with rows on
    several sample sets gets one entry per set (named "<model> [<data> <samples>]")."""
    rows = [r for r in store.rows(kind=kind) if (models is None or r.key.model in models)
            and (samples is None or r.key.samples == samples)]
    sets: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        sets[r.key.model].add(r.key.samples)
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        name = r.key.model
        if len(sets[name]) > 1 or r.key.defense != "none":
            extra = [] if r.key.defense == "none" else [r.key.defense]
            if len(sets[name]) > 1:
                extra.append(f"{_data_name(r.key)} {r.key.samples}")
            name = f"{name} [{', '.join(extra)}]"
        out[name] = r.metrics
    return out


def identification_results(
    store: ResultStore, models: list[str] | None = None, samples: str | None = None
) -> dict[str, dict[str, Any]]:
    """Identification metrics per model (see `record_identification`), of one sample set if given;
    FMR and FNMR carry their Clopper-Pearson interval in ``intervals`` (over the impostor and the
    genuine test pairs, half of ``n_pairs`` each; pairs share images, so it is a lower bound of
    the true uncertainty)."""
    out = _by_model(store, "identification", models, samples)
    for metrics in out.values():
        half = int(metrics.get("n_pairs") or 0) // 2
        iv = {k: rate(int(round(metrics[k] * half)), half) for k in ("fmr", "fnmr")
              if half and metrics.get(k) is not None}
        if iv:
            metrics["intervals"] = iv
    return out


def masking_flags(
    store: ResultStore, models: list[str] | None = None, samples: str | None = None
) -> list[dict[str, Any]]:
    """Every gradient-masking check for the models in `store` (on one sample set if given): rules
    over the rows plus the gradient probes recorded by `record_probe`."""
    from robustlab.evaluate.defended import defended_models
    from robustlab.evaluate.masking import check_against_base, check_probe, check_rows
    from robustlab.evaluate.selftests import indicator_flags, selftest_flags, selftest_results

    meta = store.get_meta("models", {}) or {}
    num_classes = {k: v.get("config", {}).get("num_classes") for k, v in meta.items()}
    rows = summarize(store, models, samples)
    flags = check_rows(rows, num_classes)
    for model, probe in _by_model(store, "probe", models, samples).items():
        flags += check_probe(model, probe)
    defended = [d for d in defended_models(meta) if models is None or d["model"] in models]
    flags += check_against_base(summarize(store, None, samples), defended)
    flags += selftest_flags(selftest_results(store, models, samples))
    flags += indicator_flags(rows)
    return [f.to_dict() for f in flags]
