"""The data behind an experiment's paper-style tables, read from a run directory's store.

`paper_tables(store)` returns None for a run without an experiment index (a plain
`evaluate` run), else one JSON-able dict per question the experiment asks:

- ``scale``: per data set, what the run is (data, attacked samples, backbones, epochs,
  seeds), and ``deviations``: the file's known departures from the papers' settings;
- ``grid``: per data set and defense, models x (attack, eps) robust accuracy, clean
  accuracy (a defended row: the defended model's own, its base's beside it), and the worst
  case per sample at each eps (over every stored attack on the model at that eps, transfer
  cells included);
- ``seeds``: per grid and model trained with several seeds, the mean, sd and range over seeds;
- ``defenses``: per model with a `defenses:` axis, defenses x (attack, eps) robust accuracy
  with Success / Failed / Detected and detection ROC-AUC;
- ``transfer``: per (attack, eps), the source x target matrix of robust accuracy (the
  diagonal is the white-box cell);
- ``sweep``: per swept model family, the swept value against clean and worst-case accuracy;
- ``claims``: each published claim beside robustlab's measurement, its computed verdict
  (`robustlab.report.verdicts`), the run's scale and every known deviation;
- ``paired``: per data set and eps, exact McNemar comparisons of the worst case per sample of
  the undefended models two by two (one seed with the same seed), and of each defended model
  against its base;
- ``cells``: every planned cell's per-cell metrics (confidence under attack, MSE, SSIM /
  MS-SSIM, detection ROC-AUC, the K-A3 rank pmf and its check).

Accuracies are fractions in [0, 1]. A rate is a dict {"value", "n", "ci_low", "ci_high"}
(Clopper-Pearson 95%; ``n`` and the interval None when the sample count is unknown).
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from typing import Any

from robustlab.core.stats import mcnemar, rate_of, spread
from robustlab.core.threat import format_eps
from robustlab.evaluate.summary import WORST, reduced_settings, summarize, with_intervals, worst_outcomes
from robustlab.report import verdicts
from robustlab.store.results import ResultKey, ResultStore

CELL_METRICS = ("robust_accuracy", "clean_accuracy", "success_rate", "detection_rate", "detected",
                "mean_confidence", "confidence_success", "mean_mse", "mean_ssim", "mean_ms_ssim", "similarity",
                "detection_auc", "mean_l2", "mean_linf", "rank_pmf", "ka3_check", "n", "intervals")
RATES = ("robust_accuracy", "clean_accuracy", "success_rate", "detection_rate")


def _eps_label(eps: float | None) -> str:
    return format_eps(eps)


def _rate(metrics: dict[str, Any] | None, name: str = "robust_accuracy") -> dict[str, Any] | None:
    """{"value", "n", "ci_low", "ci_high"} of rate `name` of a row (interval from its ``intervals``)."""
    if metrics is None or metrics.get(name) is None:
        return None
    iv = (metrics.get("intervals") or {}).get(name)
    if iv is None:
        iv = with_intervals(dict(metrics)).get("intervals", {}).get(name)
    return {"value": metrics[name], "n": iv["n"] if iv else None, "ci_low": iv["ci_low"] if iv else None,
            "ci_high": iv["ci_high"] if iv else None}


def _value(value: float | None, n: int | None) -> dict[str, Any] | None:
    """A rate from a stored fraction and its sample count (no interval when n is unknown)."""
    if value is None:
        return None
    r = rate_of(value, n) if n else None
    return {"value": value, "n": n if r else None, "ci_low": r["ci_low"] if r else None,
            "ci_high": r["ci_high"] if r else None}


class _Run:
    """The store's rows, index and metadata, read once."""

    def __init__(self, store: ResultStore, index: dict[str, Any]) -> None:
        self.store, self.index = store, index
        self.rows = {r.key: r for r in store.rows()}
        self.worst = {(r["model"], r["defense"], r["samples"], r["eps"]): r
                      for r in summarize(store) if r["attack"] == WORST}
        self.outcomes = worst_outcomes(store)
        self.models_meta = store.get_meta("models", {}) or {}
        self.defenses_meta = store.get_meta("defenses", {}) or {}
        self.models = index["models"]

    def metrics(self, key: dict[str, Any] | None) -> dict[str, Any] | None:
        row = self.rows.get(ResultKey(**key)) if key else None
        return None if row is None else with_intervals(dict(row.metrics))

    def right(self, key: dict[str, Any] | None) -> list[bool] | None:
        """Per sample: right after the attack of the row `key`."""
        row = self.rows.get(ResultKey(**key)) if key else None
        if row is None:
            return None
        return [a == y for a, y in zip(row.per_sample["adv_pred"], row.per_sample["y"], strict=True)]

    def cell_key(self, model_id: str, defense_id: str, attack: str, eps: float | None) -> dict | None:
        return next((c["key"] for c in self.index["cells"] if c["model"] == model_id and c["defense"] == defense_id
                     and c["attack"] == attack and c["eps"] == eps), None)

    def labels(self, model_id: str, defense_id: str) -> tuple[str, str]:
        """(model key, defense label) of the rows of (model, defense): the model's own, or the
        defended model's (a model of its own, `Driver._defense_ready`)."""
        if defense_id == "none":
            return self.models[model_id]["key"], "none"
        d = self.defenses_meta.get(f"{model_id}/{defense_id}") or {}
        return d.get("model", ""), d.get("defense", "")

    def worst_of(self, model_id: str, defense_id: str, eps: float) -> dict[str, Any] | None:
        hit = self.worst.get((*self.labels(model_id, defense_id), self.models[model_id]["samples"], eps))
        if hit is None:  # a single stored row at this eps: it is the worst case
            keys = {json.dumps(c["key"], sort_keys=True) for c in self.index["cells"] if c["model"] == model_id
                    and c["defense"] == defense_id and c["eps"] == eps}
            hit = self.metrics(json.loads(keys.pop())) if len(keys) == 1 else None
        return hit

    def worst_right(self, model_id: str, defense_id: str, eps: float) -> list[bool] | None:
        return self.outcomes.get((*self.labels(model_id, defense_id), self.models[model_id]["samples"], float(eps)))

    def clean(self, model_id: str, defense_id: str = "none") -> dict[str, Any] | None:
        """Clean accuracy on the whole test split: the model's, or the defended model's own."""
        meta = self.models_meta.get(self.labels(model_id, defense_id)[0], {})
        return _value(meta.get("clean_accuracy"), meta.get("n_test"))

    def group(self, model_id: str) -> str:
        return self.models[model_id].get("group") or model_id

    def replicas(self, group: str) -> list[str]:
        return [mid for mid in self.models if self.group(mid) == group]


def paper_tables(store: ResultStore) -> dict[str, Any] | None:
    index = store.get_meta("index")
    if not index:
        return None
    run = _Run(store, index)
    cells_out = []
    for c in index["cells"]:
        m = run.metrics(c["key"])
        if m is not None:
            cells_out.append({**{k: c[k] for k in ("model", "defense", "attack", "eps")},
                              **{k: m[k] for k in CELL_METRICS if k in m}})
    grid = _grid(run, cells_out)
    scales = _scale(run)
    return {
        "scale": scales,
        "deviations": list(index.get("deviations") or []),
        "grid": grid,
        "seeds": _seeds(run, grid),
        "defenses": _defenses(run, cells_out),
        "transfer": _transfer(run),
        "sweep": _sweep(run),
        "claims": _claims(run, scales),
        "paired": _paired(run),
        "cells": cells_out,
    }


def _scale(run: _Run) -> list[dict[str, Any]]:
    """Per data set: name, training images per class, attacked samples, the test split's size,
    backbones, epochs and seeds of its models."""
    out = []
    data_specs = run.index.get("data") or {}
    for key in dict.fromkeys(m["data"] for m in run.models.values()):
        ids = [mid for mid, m in run.models.items() if m["data"] == key]
        metas = [run.models_meta.get(run.models[mid]["key"], {}) for mid in ids]
        n_eval = next((len(r.per_sample.get("y", [])) for r in run.rows.values()
                       if r.key.samples == run.models[ids[0]]["samples"]), None)
        spec = data_specs.get(key, {})
        out.append({
            "data": key,
            "name": spec.get("name", key),
            "train_per_class": spec.get("train_per_class"),
            "n_eval": n_eval,
            "n_test": next((m.get("n_test") for m in metas if m.get("n_test")), None),
            "backbones": sorted({str(m.get("config", {}).get("backbone")) for m in metas if m}),
            "epochs": sorted({m.get("train", {}).get("epochs") for m in metas if m.get("train", {}).get("epochs")}),
            "seeds": max((len(run.replicas(run.group(mid))) for mid in ids), default=1),
        })
    return out


def _columns(index: dict, cells: list[dict]) -> list[dict[str, Any]]:
    """(attack, eps) columns in the file's attack order; eps 0 is left to the worst-case column
    (every attack at eps 0 is the clean accuracy on the attacked samples)."""
    order = list(index["attacks"])
    seen = dict.fromkeys((c["attack"], c["eps"]) for c in cells if c["eps"] != 0)
    cols = sorted(seen, key=lambda ae: (order.index(ae[0]), -1.0 if ae[1] is None else ae[1]))
    return [{"attack": a, "eps": e, "label": f"{a} @ {_eps_label(e)}"} for a, e in cols]


def _grid(run: _Run, cells: list[dict]) -> list[dict[str, Any]]:
    out = []
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for c in cells:
        groups[(run.models[c["model"]]["data"], c["defense"])].append(c)
    for (data, defense), group in groups.items():
        columns = _columns(run.index, group)
        eps_values = sorted({c["eps"] for c in group if c["eps"] is not None})
        table_rows = []
        for model_id in dict.fromkeys(c["model"] for c in group):
            mine = {(c["attack"], c["eps"]): c for c in group if c["model"] == model_id}
            table_rows.append({
                "model": model_id,
                "group": run.group(model_id),
                "seed": run.models[model_id].get("seed"),
                "train": _recipe(run.models_meta.get(run.models[model_id]["key"], {})),
                "clean": run.clean(model_id, defense),
                "clean_base": run.clean(model_id) if defense != "none" else None,
                "cells": {col["label"]: _rate(mine[(col["attack"], col["eps"])])
                          for col in columns if (col["attack"], col["eps"]) in mine},
                "worst": {_eps_label(e): _rate(run.worst_of(model_id, defense, e)) for e in eps_values},
            })
        out.append({"data": data, "defense": defense, "columns": [c["label"] for c in columns],
                    "eps": [_eps_label(e) for e in eps_values], "rows": table_rows})
    return out


def _seeds(run: _Run, grid: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per grid (data set, defense), each model trained with several seeds: mean, sd and range
    over seeds of its clean accuracy, every cell and the worst case per eps, with the mean
    half-width of the per-seed 95% intervals beside them."""
    out = []
    for g in grid:
        by_group: dict[str, list[dict]] = defaultdict(list)
        for r in g["rows"]:
            by_group[r["group"]].append(r)
        rows = []
        for group, members in by_group.items():
            if len(members) < 2:
                continue

            def agg(values: list[dict[str, Any] | None]) -> dict[str, Any] | None:
                s = spread([v["value"] if v else None for v in values])
                halves = [(v["ci_high"] - v["ci_low"]) / 2 for v in values if v and v.get("ci_low") is not None]
                return None if s is None else {**s, "ci_half": sum(halves) / len(halves) if halves else None}

            rows.append({
                "model": group,
                "seeds": [r["seed"] for r in members],
                "clean": agg([r["clean"] for r in members]),
                "cells": {c: agg([r["cells"].get(c) for r in members]) for c in g["columns"]},
                "worst": {e: agg([r["worst"].get(e) for r in members]) for e in g["eps"]},
            })
        if rows:
            out.append({"data": g["data"], "defense": g["defense"], "columns": g["columns"], "eps": g["eps"],
                        "rows": rows})
    return out


def _recipe(meta: dict[str, Any]) -> str:
    """The training recipe's label the runner recorded ("standard" or the adversarial method)."""
    return str(meta.get("training") or "standard")


def _defenses(run: _Run, cells: list[dict]) -> list[dict[str, Any]]:
    index = run.index
    if not index["defenses"]:
        return []
    out = []
    for model_id in dict.fromkeys(c["model"] for c in cells):
        mine = [c for c in cells if c["model"] == model_id]
        if len({c["defense"] for c in mine}) < 2:
            continue
        columns = _columns(index, mine)
        table = []
        for d in dict.fromkeys(c["defense"] for c in mine):
            by = {(c["attack"], c["eps"]): c for c in mine if c["defense"] == d}
            cells_d = {}
            for col in columns:
                c = by.get((col["attack"], col["eps"]))
                if c is not None:
                    cells_d[col["label"]] = {"robust_accuracy": _rate(c),
                                             **{k: c.get(k) for k in ("success_rate", "detection_rate",
                                                                      "detection_auc")},
                                             "detection": _rate(c, "detection_rate")}
            for t in index["transfers"]:  # non-adaptive: crafted on the undefended model
                if t["source"] == model_id and t["target"] == model_id and t.get("defense", "none") == d != "none":
                    m = run.metrics(t["key"])
                    label = f"{t['attack']} @ {_eps_label(t['eps'])}"
                    if m is not None and label in cells_d:
                        cells_d[label]["non_adaptive"] = _rate(m)
            table.append({"defense": d, "clean": run.clean(model_id, d), "cells": cells_d})
        out.append({"model": model_id, "columns": [c["label"] for c in columns], "rows": table})
    return out


def _transfer(run: _Run) -> list[dict[str, Any]]:
    groups: dict[tuple[str, float], list[dict]] = defaultdict(list)
    for t in run.index["transfers"]:
        if t.get("defense", "none") == "none":
            groups[(t["attack"], t["eps"])].append(t)
    out = []
    for (attack, eps), cells in groups.items():
        sources = list(dict.fromkeys(t["source"] for t in cells))
        targets = list(dict.fromkeys(t["target"] for t in cells))
        acc: list[list[float | None]] = [[None] * len(targets) for _ in sources]
        n: int | None = None
        for t in cells:
            m = run.metrics(t["key"])
            acc[sources.index(t["source"])][targets.index(t["target"])] = None if m is None else m["robust_accuracy"]
            n = n or (m or {}).get("n")
        out.append({"attack": attack, "eps": eps, "sources": sources, "targets": targets, "accuracy": acc, "n": n})
    return out


def _sweep(run: _Run) -> list[dict[str, Any]]:
    families: dict[str, list[str]] = defaultdict(list)
    for mid, m in run.models.items():
        if m["swept"]:
            families[f"{m['data']}/{m['family']}"].append(mid)
    out = []
    eps_all = sorted({c["eps"] for c in run.index["cells"] if c["eps"] is not None and c["eps"] > 0})
    for family, ids in families.items():
        keys = [k for k, _ in run.models[ids[0]]["swept"]]
        points = []
        for mid in ids:
            m = run.models[mid]
            points.append({
                "model": mid,
                "seed": m.get("seed"),
                "values": {k: v for k, v in m["swept"]},
                "clean": run.clean(mid),
                "worst": {_eps_label(e): _rate(run.worst_of(mid, "none", e)) for e in eps_all},
            })
        out.append({"family": family, "keys": keys, "points": points})
    return out


def _measure(run: _Run, c: dict[str, Any], model_id: str) -> tuple[dict[str, Any] | None, list[bool] | None]:
    """(metrics, per-sample right) of the cell claim `c` names, on one seed `model_id`."""
    if c["source"] is not None:
        seed = run.models[model_id].get("seed")
        source = next((s for s in run.replicas(c["source"]) if run.models[s].get("seed") == seed), None)
        hit = next((t for t in run.index["transfers"] if t["source"] == source and t["target"] == model_id
                    and t["attack"] == c["attack"] and t["eps"] == c["eps"]), None)
        key = hit["key"] if hit else None
        return run.metrics(key), run.right(key)
    if c["attack"] == WORST:
        m = run.worst_of(model_id, c["defense"], c["eps"]) if c["eps"] is not None else None
        if c["metric"] == "clean_accuracy" and m is None:  # on the whole test split
            clean = run.clean(model_id, c["defense"])
            m = None if clean is None else {"clean_accuracy": clean["value"], "n": clean["n"]}
        return m, run.worst_right(model_id, c["defense"], c["eps"]) if c["eps"] is not None else None
    key = run.cell_key(model_id, c["defense"], c["attack"], c["eps"])
    return run.metrics(key), run.right(key)


def _claims(run: _Run, scales: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for c in run.index["claims"]:
        c = {"tolerance": 0.05, "than": None, "direction": "higher", "margin": 0.0, "paper_eps": None,
             "paper_data": None, "deviations": [], **c}
        ids = run.replicas(c["model"])
        data_key = run.models[ids[0]]["data"] if ids else None
        scale = next((s for s in scales if s["data"] == data_key), None)
        mismatch = verdicts.setting_mismatch(c, scale["name"] if scale else None)
        per_seed = []
        for mid in ids:
            m, right = _measure(run, c, mid)
            entry: dict[str, Any] = {"model": mid, "seed": run.models[mid].get("seed")}
            if c["than"] is not None:
                other = next((o for o in run.replicas(c["than"])
                              if run.models[o].get("seed") == run.models[mid].get("seed")), None)
                theirs = {**c, "defense": c.get("than_defense") or c["defense"]}
                other_right = _measure(run, theirs, other)[1] if other else None
                if right is not None and other_right is not None and len(right) == len(other_right):
                    test = mcnemar(right, other_right)
                    sign = 1 if c["direction"] == "higher" else -1
                    low, high = sorted((sign * test["ci_low"], sign * test["ci_high"]))
                    entry.update(measured=test["difference"], ci_low=test["ci_low"], ci_high=test["ci_high"],
                                 n=test["n"], p_value=test["p_value"],
                                 verdict=verdicts.comparison_verdict(sign * test["difference"], low, high,
                                                                     test["p_value"], c["margin"]))
            else:
                r = _rate(m, c["metric"]) if m is not None else None
                if r is not None:
                    entry.update(measured=r["value"], ci_low=r["ci_low"], ci_high=r["ci_high"], n=r["n"],
                                 verdict=verdicts.value_verdict(r["ci_low"], r["ci_high"], c["published"],
                                                                c["tolerance"]))
            per_seed.append(entry)
        measured = [e for e in per_seed if "measured" in e]
        if not measured:
            verdict, why = verdicts.INCONCLUSIVE, ["not measured (the cell is not in the store)"]
        elif mismatch:
            verdict, why = verdicts.INCONCLUSIVE, mismatch
        else:
            verdict = verdicts.combine([e["verdict"] for e in measured]) if len(measured) == len(per_seed) \
                else verdicts.INCONCLUSIVE
            why = [] if len(measured) == len(per_seed) else ["some seeds not measured"]
            if any(e.get("ci_low") is None for e in measured):
                verdict, why = verdicts.INCONCLUSIVE, [f"no sampling interval for {c['metric']}"]
        first = measured[0] if len(measured) == 1 else {}
        mean = spread([e["measured"] for e in measured])
        value = first.get("measured", mean["mean"] if mean else None)
        base = c["published"] if c["than"] is None else c["margin"]
        out.append({
            **c,
            "measured": value,
            "ci_low": first.get("ci_low"),
            "ci_high": first.get("ci_high"),
            "n": first.get("n"),
            "p_value": first.get("p_value"),
            "delta": None if value is None or base is None else value - base,
            "seeds": mean if len(measured) > 1 else None,
            "per_seed": per_seed,
            "verdict": verdict,
            "why": why,
            "data": scale["name"] if scale else None,
            "scale": scale,
            "deviations": [*c["deviations"], *_auto_deviations(run, c, ids, scale)],
        })
    return out


def _auto_deviations(run: _Run, c: dict[str, Any], ids: list[str], scale: dict[str, Any] | None) -> list[str]:
    """Deviations robustlab can see for itself: a reduced ensemble, a subset of the test split
    attacked, one training seed; then the file's own `deviations:`."""
    out = []
    attack = run.index["attacks"].get(c["attack"])
    specs = []
    if attack is not None:
        key = run.cell_key(ids[0], c["defense"], c["attack"], c["eps"]) if ids else None
        specs = [key["attack"]] if key else []
    elif c["attack"] == WORST and ids:
        specs = [x["key"]["attack"] for x in run.index["cells"] if x["model"] == ids[0]
                 and x["defense"] == c["defense"] and x["eps"] == c["eps"]]
    reduced = sorted({r for s in specs for r in _reduced(s)})
    if reduced:
        out.append("attack ensemble below full strength (" + "; ".join(reduced) + ")")
    if scale and scale.get("n_eval") and scale.get("n_test") and scale["n_eval"] < scale["n_test"]:
        out.append(f"{scale['n_eval']} of {scale['n_test']} test images attacked")
    if len(ids) < 2:
        out.append("one training seed")
    return out + list(run.index.get("deviations") or [])


def _reduced(attack_key: str) -> list[str]:
    try:
        return reduced_settings(attack_key)
    except (KeyError, ValueError):  # an attack not registered here (a plugin not imported)
        return []


def _paired(run: _Run) -> list[dict[str, Any]]:
    """Exact McNemar comparisons of worst-case accuracy per sample on shared samples, at each
    eps > 0: undefended models two by two (one seed with the same seed), each defended model
    against its base."""
    eps_all = sorted({c["eps"] for c in run.index["cells"] if c["eps"] is not None and c["eps"] > 0})
    out = []
    by_samples: dict[str, list[str]] = defaultdict(list)
    for mid, m in run.models.items():
        by_samples[m["samples"]].append(mid)
    for ids in by_samples.values():
        pairs = [((a, "none"), (b, "none")) for a, b in itertools.combinations(ids, 2)
                 if run.models[a].get("seed") == run.models[b].get("seed")]
        pairs += [((mid, d), (mid, "none")) for mid in ids for d in run.index["defenses"]
                  if any(c["model"] == mid and c["defense"] == d for c in run.index["cells"])]
        for eps in eps_all:
            for (a, da), (b, db) in pairs:
                first, second = run.worst_right(a, da, eps), run.worst_right(b, db, eps)
                if first is None or second is None or len(first) != len(second):
                    continue
                out.append({"data": run.models[a]["data"], "eps": eps, "first": a, "first_defense": da,
                            "second": b, "second_defense": db, **mcnemar(first, second)})
    return out
