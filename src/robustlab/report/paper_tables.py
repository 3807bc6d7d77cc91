"""The data behind an experiment's paper-style tables, read from a run directory's store.

`paper_tables(store)` returns None for a run without an experiment index (a plain
`evaluate` run), else one JSON-able dict per question the experiment asks:

- ``grid``: per data set and defense, models x (attack, eps) robust accuracy, clean
  accuracy, and the worst case per sample at each eps (over every stored attack on the
  model at that eps, transfer cells included);
- ``defenses``: per model with a `defenses:` axis, defenses x (attack, eps) robust accuracy
  with Success / Failed / Detected and detection ROC-AUC;
- ``transfer``: per (attack, eps), the source x target matrix of robust accuracy (the
  diagonal is the white-box cell);
- ``sweep``: per swept model family, the swept value against clean and worst-case accuracy;
- ``claims``: each published number beside robustlab's measurement and the delta;
- ``cells``: every planned cell's per-cell metrics (confidence under attack, MSE, SSIM /
  MS-SSIM, detection ROC-AUC, the K-A3 rank pmf and its check).
Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from robustlab.core.threat import format_eps
from robustlab.evaluate.summary import WORST, summarize
from robustlab.store.results import ResultKey, ResultStore

CELL_METRICS = ("robust_accuracy", "clean_accuracy", "success_rate", "detection_rate", "detected",
                "mean_confidence", "confidence_success", "mean_mse", "mean_ssim", "mean_ms_ssim", "similarity",
                "detection_auc", "mean_l2", "mean_linf", "rank_pmf", "ka3_check")


def _eps_label(eps: float | None) -> str:
    return format_eps(eps)


def paper_tables(store: ResultStore) -> dict[str, Any] | None:
    index = store.get_meta("index")
    if not index:
        return None
    rows = {r.key: r.metrics for r in store.rows()}
    worst = {(r["model"], r["defense"], r["samples"], r["eps"]): r for r in summarize(store) if r["attack"] == WORST}
    models_meta = store.get_meta("models", {}) or {}
    models = index["models"]
    defenses = {"none": "none", **index["defenses"]}

    def metrics(key: dict[str, Any]) -> dict[str, Any] | None:
        return rows.get(ResultKey(**key))

    def worst_of(model_id: str, defense_id: str, eps: float) -> dict[str, Any] | None:
        m = models[model_id]
        hit = worst.get((m["key"], defenses[defense_id], m["samples"], eps))
        if hit is None:  # a single stored row at this eps: it is the worst case
            keys = {json.dumps(c["key"], sort_keys=True) for c in index["cells"] if c["model"] == model_id
                    and c["defense"] == defense_id and c["eps"] == eps}
            hit = metrics(json.loads(keys.pop())) if len(keys) == 1 else None
        return hit

    cells_out = []
    for c in index["cells"]:
        m = metrics(c["key"])
        if m is not None:
            cells_out.append({**{k: c[k] for k in ("model", "defense", "attack", "eps")},
                              **{k: m[k] for k in CELL_METRICS if k in m}})
    return {
        "grid": _grid(index, cells_out, worst_of, models_meta),
        "defenses": _defenses(index, cells_out, metrics),
        "transfer": _transfer(index, metrics),
        "sweep": _sweep(index, worst_of, models_meta),
        "claims": _claims(index, metrics, worst_of, models_meta),
        "cells": cells_out,
    }


def _columns(index: dict, cells: list[dict]) -> list[dict[str, Any]]:
    """(attack, eps) columns in the file's attack order; eps 0 is left to the worst-case column
    (every attack at eps 0 is the clean accuracy on the attacked samples)."""
    order = list(index["attacks"])
    seen = dict.fromkeys((c["attack"], c["eps"]) for c in cells if c["eps"] != 0)
    cols = sorted(seen, key=lambda ae: (order.index(ae[0]), -1.0 if ae[1] is None else ae[1]))
    return [{"attack": a, "eps": e, "label": f"{a} @ {_eps_label(e)}"} for a, e in cols]


def _grid(index, cells, worst_of, models_meta) -> list[dict[str, Any]]:
    out = []
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for c in cells:
        groups[(index["models"][c["model"]]["data"], c["defense"])].append(c)
    for (data, defense), group in groups.items():
        columns = _columns(index, group)
        eps_values = sorted({c["eps"] for c in group if c["eps"] is not None})
        table_rows = []
        for model_id in dict.fromkeys(c["model"] for c in group):
            mine = {(c["attack"], c["eps"]): c for c in group if c["model"] == model_id}
            key = index["models"][model_id]["key"]
            worst = {}
            for e in eps_values:
                w = worst_of(model_id, defense, e)
                worst[_eps_label(e)] = None if w is None else w["robust_accuracy"]
            table_rows.append({
                "model": model_id,
                "train": _recipe(models_meta.get(key, {})),
                "clean": models_meta.get(key, {}).get("clean_accuracy"),
                "cells": {col["label"]: mine[(col["attack"], col["eps"])]["robust_accuracy"]
                          for col in columns if (col["attack"], col["eps"]) in mine},
                "worst": worst,
            })
        out.append({"data": data, "defense": defense, "columns": [c["label"] for c in columns],
                    "eps": [_eps_label(e) for e in eps_values], "rows": table_rows})
    return out


def _recipe(meta: dict[str, Any]) -> str:
    """The training recipe's label the runner recorded ("standard" or the adversarial method)."""
    return str(meta.get("training") or "standard")


def _defenses(index, cells, metrics) -> list[dict[str, Any]]:
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
            cells_d = {col["label"]: {k: by[(col["attack"], col["eps"])].get(k)
                                      for k in ("robust_accuracy", "success_rate", "detection_rate", "detection_auc")}
                       for col in columns if (col["attack"], col["eps"]) in by}
            for t in index["transfers"]:  # non-adaptive: crafted on the undefended model
                if t["source"] == model_id and t["target"] == model_id and t.get("defense", "none") == d != "none":
                    m = metrics(t["key"])
                    label = f"{t['attack']} @ {_eps_label(t['eps'])}"
                    if m is not None and label in cells_d:
                        cells_d[label]["non_adaptive"] = m["robust_accuracy"]
            table.append({"defense": d, "cells": cells_d})
        out.append({"model": model_id, "columns": [c["label"] for c in columns], "rows": table})
    return out


def _transfer(index, metrics) -> list[dict[str, Any]]:
    groups: dict[tuple[str, float], list[dict]] = defaultdict(list)
    for t in index["transfers"]:
        if t.get("defense", "none") == "none":
            groups[(t["attack"], t["eps"])].append(t)
    out = []
    for (attack, eps), cells in groups.items():
        sources = list(dict.fromkeys(t["source"] for t in cells))
        targets = list(dict.fromkeys(t["target"] for t in cells))
        acc: list[list[float | None]] = [[None] * len(targets) for _ in sources]
        for t in cells:
            m = metrics(t["key"])
            acc[sources.index(t["source"])][targets.index(t["target"])] = (
                None if m is None else m["robust_accuracy"])
        out.append({"attack": attack, "eps": eps, "sources": sources, "targets": targets, "accuracy": acc})
    return out


def _sweep(index, worst_of, models_meta) -> list[dict[str, Any]]:
    families: dict[str, list[str]] = defaultdict(list)
    for mid, m in index["models"].items():
        if m["swept"]:
            families[f"{m['data']}/{m['family']}"].append(mid)
    out = []
    eps_all = sorted({c["eps"] for c in index["cells"] if c["eps"] is not None and c["eps"] > 0})
    for family, ids in families.items():
        keys = [k for k, _ in index["models"][ids[0]]["swept"]]
        points = []
        for mid in ids:
            m = index["models"][mid]
            points.append({
                "model": mid,
                "values": {k: v for k, v in m["swept"]},
                "clean": models_meta.get(m["key"], {}).get("clean_accuracy"),
                "worst": {_eps_label(e): (w["robust_accuracy"] if (w := worst_of(mid, "none", e)) else None)
                          for e in eps_all},
            })
        out.append({"family": family, "keys": keys, "points": points})
    return out


def _claims(index, metrics, worst_of, models_meta) -> list[dict[str, Any]]:
    out = []
    for c in index["claims"]:
        measured = None
        m = None
        if c["model"] not in index["models"] or (c["source"] and c["source"] not in index["models"]):
            pass  # the model is not trained yet (an interrupted run): nothing measured
        elif c["source"] is not None:
            hit = next((t for t in index["transfers"] if t["source"] == c["source"] and t["target"] == c["model"]
                        and t["attack"] == c["attack"] and t["eps"] == c["eps"]), None)
            m = metrics(hit["key"]) if hit else None
        elif c["attack"] == WORST:
            m = worst_of(c["model"], c["defense"], c["eps"]) if c["eps"] is not None else None
            if c["metric"] == "clean_accuracy" and m is None:
                m = {"clean_accuracy": models_meta.get(index["models"][c["model"]]["key"], {}).get("clean_accuracy")}
        else:
            hit = next((x for x in index["cells"] if x["model"] == c["model"] and x["defense"] == c["defense"]
                        and x["attack"] == c["attack"] and x["eps"] == c["eps"]), None)
            m = metrics(hit["key"]) if hit else None
        if m is not None:
            measured = m.get(c["metric"])
        delta = None if measured is None else measured - c["published"]
        out.append({**c, "measured": measured, "delta": delta})
    return out
