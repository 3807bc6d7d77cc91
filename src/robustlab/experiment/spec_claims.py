"""Parsing the `claims:` section of an experiment file: each published number or comparison,
checked against the grid (a claim about a cell the grid does not hold is refused)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from robustlab.core.errors import ConfigError
from robustlab.core.threat import parse_eps
from robustlab.experiment.spec_parsing import fail, known_keys, resolve_models
from robustlab.experiment.spec_parts import METRICS, Claim

if TYPE_CHECKING:
    from robustlab.experiment.spec import ExperimentSpec


def parse_claims(doc: Any, spec: ExperimentSpec) -> tuple[Claim, ...]:
    if doc is None:
        return ()
    if not isinstance(doc, list):
        raise ConfigError("claims must be a list")
    out = []
    for i, c in enumerate(doc):
        where = f"claims[{i}]"
        if not isinstance(c, dict):
            fail(where, "must be a mapping (model, attack, eps, published)")
        known_keys(where, c, {"model", "attack", "eps", "published", "metric", "defense", "source", "ref", "data",
                               "tolerance", "than", "direction", "margin", "paper_eps", "paper_data", "deviations",
                               "than_defense"})
        for k in ("model", "attack", *(() if "than" in c else ("published",))):
            if k not in c:
                fail(where, f"needs {k!r}")
        model, data = _claim_model(where, c["model"], spec, c.get("data"))
        metric = str(c.get("metric", "robust_accuracy"))
        if metric not in METRICS:
            fail(where, f"unknown metric {metric!r}; choose one of {list(METRICS)}")
        eps = None if c.get("eps") is None else parse_eps(c["eps"], f"{where}: eps")
        attack = str(c["attack"])
        defense = str(c.get("defense", "none"))
        source = c.get("source")
        if source is not None:
            source = _claim_model(where, source, spec, data)[0]
        than = None if c.get("than") is None else _claim_model(where, c["than"], spec, data)[0]
        if than is not None and source is not None:
            fail(where, "a comparison (than:) is made on white-box or worst-case cells, not on a transfer cell")
        than_defense = None if c.get("than_defense") is None else str(c["than_defense"])
        if than_defense is not None and than is None:
            fail(where, "than_defense needs than: (the model compared with)")
        if than is not None and than == model and (than_defense or defense) == defense:
            fail(where, f"a comparison of {model} with itself: give than_defense (e.g. none)")
        direction = str(c.get("direction", "higher"))
        if direction not in ("higher", "lower"):
            fail(where, f"direction must be 'higher' or 'lower', got {direction!r}")
        numbers = {}
        for k, default in (("tolerance", 0.05), ("margin", 0.0)):
            v = c.get(k, default)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                fail(where, f"{k} must be a number in [0, 1], got {v!r}")
            numbers[k] = float(v)
        published = c.get("published")
        if published is not None and (isinstance(published, bool) or not isinstance(published, (int, float))):
            fail(where, f"published must be a number, got {published!r}")
        deviations = c.get("deviations", [])
        if not isinstance(deviations, list) or not all(isinstance(x, str) for x in deviations):
            fail(where, "deviations must be a list of strings")
        claim = Claim(model, attack, eps, None if published is None else float(published), metric, defense, source,
                      str(c.get("ref", "")), numbers["tolerance"], than, direction, numbers["margin"],
                      None if c.get("paper_eps") is None else parse_eps(c["paper_eps"], f"{where}: paper_eps"),
                      None if c.get("paper_data") is None else str(c["paper_data"]), tuple(deviations),
                      than_defense)
        for who, guard in ((model, defense), (than, than_defense or defense)):
            if who is not None and not spec.has_cell(dataclasses.replace(claim, model=who, defense=guard)):
                fail(where, f"no cell {who} / defense {guard} / {attack} / eps {eps}"
                      f"{f' / from {source}' if source else ''} in the grid")
        out.append(claim)
    return tuple(out)


def _claim_model(where: str, name: Any, spec: ExperimentSpec, data: str | None) -> tuple[str, str | None]:
    """(model id without seed suffix, its data set) of a claim's model, source or `than`."""
    hits = resolve_models(where, str(name), spec.models, data)
    groups = {m.group for m in hits}
    if len(groups) != 1:
        fail(where, f"{name!r} names {len(groups)} models ({sorted(groups)}): use the full id")
    return hits[0].group, hits[0].data
