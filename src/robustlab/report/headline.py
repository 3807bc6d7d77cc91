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

from robustlab.core.threat import Norm, format_eps
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


IDENTIFICATION_HEADS = {"arcface", "ring", "triplet", "contrastive", "mct", "pcl"}
"""Heads trained for an embedding (margin, metric or prototype losses): verification metrics
(FMR / FNMR) describe what they were built for."""
FACE_DATA = ("orl", "yale", "faces")


def shows_identification(model: Mapping[str, Any] | None, data: str | None) -> bool:
    """Whether FMR / FNMR mean something for this model: an identification head
    (`IDENTIFICATION_HEADS`) or face data (ORL, Yale: identities). A plain softmax classifier on
    Fashion-MNIST or digits gets none (its embedding was never trained to verify pairs)."""
    head = ((model or {}).get("config") or {}).get("head")
    name = (data or "").lower()
    return head in IDENTIFICATION_HEADS or any(name.startswith(f) for f in FACE_DATA)


def threat_model(rows: Sequence[dict[str, Any]], head: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What the numbers are measured against, for the first screen: norms, the eps grid (on the
    [0, 1] pixel scale), the attack protocol and its strength ("full ensemble", "reduced
    ensemble" with the weakened settings, or "single attacks" when no ensemble member ran
    anywhere), the (model, defense) rows measured without the ensemble, and a one-line ``text``."""
    fixed = [r for r in rows if r.get("eps") is not None]
    norms = sorted({Norm.parse(r.get("norm", Norm.LINF)) for r in fixed})
    grid = sorted({r["eps"] for r in fixed if r["eps"] > 0})
    cells = [c for h in head for c in h["cells"] if c["eps"] > 0]
    single = [h for h in head if any(c["eps"] > 0 and c["ensemble"] == "none" for c in h["cells"])]
    reduced = sorted({s for c in cells for s in c["reduced"]})
    if cells and all(c["ensemble"] == "none" for c in cells):
        protocol = "single attacks"
    elif reduced:
        protocol = "reduced ensemble"
    else:
        protocol = "full ensemble" if cells else "none"
    attacks = sorted({_attack_name(r["attack"]) for r in fixed if r["attack"] != WORST})
    ensembles = sorted({r["protocol"] for r in fixed if r.get("protocol")})  # which ensemble, by name
    text = (f"Threat model: {', '.join(n.label for n in norms) or '-'} "
            f"perturbations, eps {', '.join(format_eps(e) for e in grid) or '-'} on the [0, 1] pixel scale; "
            f"attacks {', '.join(attacks) or '-'}; protocol: {protocol}"
            + (f" ({'; '.join(reduced)})" if reduced else "") + (f" [{'; '.join(ensembles)}]" if ensembles else "")
            + ", worst case per sample.")
    out = {"norms": [n.value for n in norms], "eps": grid, "pixel_range": [0.0, 1.0], "attacks": attacks,
           "protocol": protocol, "ensembles": ensembles,
           "reduced": reduced, "single_attack": [{"model": h["model"], "defense": h["defense"]} for h in single],
           "text": text}
    if single:
        out["single_attack_text"] = single_attack_text(sorted({a for r in fixed for a in [r["attack"]]
                                                               if r["attack"] != WORST
                                                               and (r["model"], r.get("defense", "none"))
                                                               in {(h["model"], h["defense"]) for h in single}}))
    return out


def single_attack_text(attacks: Sequence[str]) -> str:
    """The headline caveat of an evaluation that met no ensemble member."""
    return (f"Upper bounds from single attacks ({', '.join(attacks)}), not the ensemble: the real robust accuracy "
            "may be lower. Run the default attacks (autoattack + fgsm) before trusting these numbers.")
