"""Model cards in RobustBench's format: `write_model_cards(run_dir)` writes, per model and threat
model (norm, eps) evaluated, the JSON the zoo keeps for a leaderboard entry
(``model_info/<dataset>/<Linf|L2>/<name>.json``: link, name, authors, additional_data,
number_forward_passes, dataset, venue, architecture, eps, clean_acc, reported, autoattack_acc,
footnote), so a robustlab evaluation can be submitted or compared line by line.

robustlab fills what it measured: ``dataset``, ``architecture``, ``eps`` (as the zoo writes it,
"8/255"), ``clean_acc`` and ``autoattack_acc`` (percentages with two decimals, as strings, like
the zoo). ``autoattack_acc`` is filled only when one of AutoAttack's own protocols (``standard``,
``plus``, ``rand``) ran at full strength at that eps; it is then the worst case per sample over
every attack run there (never above AutoAttack's own number). The rest (paper, authors, venue,
extra data, forward passes, reported number) is left null: robustlab cannot know it. A
``robustlab`` section holds the evidence: samples and their digest, intervals, the attacks and
protocol, the threat model with its pixel range.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import robustlab
from robustlab.core.digest import label_name
from robustlab.core.errors import ConfigError
from robustlab.core.files import publish
from robustlab.core.threat import Norm, format_eps
from robustlab.evaluate.summary import WORST, reduced_settings, summarize
from robustlab.store.results import ResultStore

THREAT_MODELS = {Norm.LINF: "Linf", Norm.L2: "L2", Norm.L1: "L1"}
"""robustlab's norms -> the zoo's threat-model folders."""
AUTOATTACK_PROTOCOLS = ("standard", "plus", "rand")
"""`autoattack` versions that are AutoAttack's own protocols (robustlab's default ensemble is not)."""
UNKNOWN = ("link", "name", "authors", "additional_data", "number_forward_passes", "venue", "reported")


def wilson_interval(k: int, n: int) -> list[float]:
    """The Wilson score 95% interval of a rate k / n, as fractions in [0, 1] (scipy's)."""
    from scipy.stats import binomtest  # scipy loads in ~0.3 s: only when a card is written

    if n <= 0:
        return [0.0, 1.0]
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return [float(ci.low), float(ci.high)]


def _pct(rate: float | None) -> str | None:
    return None if rate is None else f"{100 * rate:.2f}"


def _architecture(meta: dict[str, Any]) -> str | None:
    config = meta.get("config") or {}
    zoo = meta.get("zoo_arch") or (str(config.get("backbone", "")).removeprefix("zoo:")
                                   if str(config.get("backbone", "")).startswith("zoo:") else None)
    if zoo:
        from robustlab.models.zoo import zoo_arch

        return zoo_arch(zoo).title
    backbone, head = config.get("backbone"), config.get("head")
    return f"{backbone} + {head}" if backbone and head and not str(head).startswith("external") else backbone


def _protocol(specs: list[dict[str, Any]]) -> tuple[str | None, str]:
    """(AutoAttack protocol run at full strength, or None; a sentence naming what ran)."""
    full = None
    names = []
    for spec in specs:
        name = spec.get("name")
        if name == "autoattack":
            version = spec.get("version", "robustlab")
            reduced = reduced_settings(json.dumps(spec))
            names.append(f"autoattack {version}" + (f" (reduced: {', '.join(reduced)})" if reduced else ""))
            if version in AUTOATTACK_PROTOCOLS and not reduced:
                full = full or version
        else:
            names.append(str(name))
    return full, ", ".join(names)


def _file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def model_cards(run_dir: str | Path) -> dict[Path, dict[str, Any]]:
    """{relative path: card} for every (model, defense, samples, norm, eps > 0) of the run."""
    with ResultStore(Path(run_dir), readonly=True) as store:
        rows = summarize(store)
        models = store.get_meta("models", {}) or {}
        specs: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
        for stored in store.rows():
            k = stored.key
            if k.eps is not None:
                specs[(k.model, k.defense, k.samples, str(k.norm), k.eps)].append(json.loads(k.attack))
    cells: dict[tuple, dict[str, Any]] = {}
    for r in rows:  # the worst-case row where several attacks ran, else the one attack's row
        if r["eps"] is None or r["eps"] <= 0 or r["norm"] not in THREAT_MODELS:
            continue
        key = (r["model"], r["defense"], r["samples"], r["norm"], r["eps"])
        if key not in cells or r["attack"] == WORST:
            cells[key] = r
    per_norm: dict[tuple, int] = defaultdict(int)
    for model, defense, _, norm, _ in cells:
        per_norm[(model, defense, norm)] += 1
    cards: dict[Path, dict[str, Any]] = {}
    for (model, defense, samples, norm, eps), row in cells.items():
        meta = models.get(model, {})
        full, ran = _protocol(specs[(model, defense, samples, norm, eps)])
        n = int(row.get("n") or 0)
        robust, clean = row["robust_accuracy"], row["clean_accuracy"]
        test_clean = meta.get("clean_accuracy")
        name = str(meta.get("id") or label_name(model)) + ("" if defense == "none" else f"_{defense}")
        eps_text = format_eps(eps)
        if per_norm[(model, defense, norm)] > 1:
            name += f"_eps-{eps_text.replace('/', '-')}"
        dataset = row.get("data") or "unknown"
        notes = [f"Evaluated by robustlab {robustlab.__version__} on {n} {row.get('subset', 'test')} samples"
                 + (" (RobustBench uses the full 10,000 test images)" if n < 10_000 else "") + ".",
                 f"Robust accuracy is the worst case per sample over: {ran}."]
        if full is None:
            notes.append("No AutoAttack protocol (standard, plus or rand) ran at full strength, so autoattack_acc "
                         "is left empty; robustlab's number is robustlab.robust_accuracy.")
        card = {
            "link": None, "name": None, "authors": None, "additional_data": None, "number_forward_passes": None,
            "dataset": dataset, "venue": None, "architecture": _architecture(meta), "eps": eps_text,
            "clean_acc": _pct(test_clean if test_clean is not None else clean), "reported": None,
            "autoattack_acc": _pct(robust) if full else None, "footnote": " ".join(notes),
            "robustlab": {
                "version": robustlab.__version__, "model": model, "defense": defense,
                "threat_model": {"norm": norm, "eps": eps, "eps_text": eps_text, "pixel_range": [0.0, 1.0]},
                "protocol": full, "attacks": ran, "samples": {"n": n, "digest": samples,
                                                             "subset": row.get("subset", "test")},
                "clean_accuracy": clean, "clean_accuracy_interval": wilson_interval(round(clean * n), n),
                "clean_accuracy_test_set": test_clean,
                "robust_accuracy": robust, "robust_accuracy_interval": wilson_interval(round(robust * n), n),
                "interval": "Wilson 95%",
                "clean_acc_from": "the whole test split" if test_clean is not None else "the attacked samples",
                "left_empty": f"{', '.join(UNKNOWN)}: not known to robustlab; fill them in before submitting",
            },
        }
        cards[Path(_file_name(dataset)) / THREAT_MODELS[norm] / f"{_file_name(name)}.json"] = card
    return cards


def write_model_cards(run_dir: str | Path, out_dir: str | Path | None = None, *,
                      overwrite: bool = False) -> list[Path]:
    """Write the model cards of `run_dir` under `out_dir` (default ``RUN_DIR/robustbench``), all
    published together and atomically; an existing card is replaced only with `overwrite`."""
    cards = model_cards(run_dir)
    if not cards:
        raise ConfigError(f"{run_dir} has no robust-accuracy cell at an eps > 0 in Linf, L2 or L1: no model card "
                          "to write")
    root = Path(out_dir) if out_dir is not None else Path(run_dir) / "robustbench"
    paths = {root / rel: card for rel, card in cards.items()}
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        raise ConfigError(f"{existing[0]} already exists ({len(existing)} card(s) would be replaced); "
                          "pass --overwrite to replace them")
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root} is a file, not a folder for the model cards")
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
    publish({p: (json.dumps(card, indent=2, allow_nan=False) + "\n").encode() for p, card in paths.items()})
    return sorted(paths)
