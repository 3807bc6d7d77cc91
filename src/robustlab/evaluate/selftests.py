"""The binarization self-test of an evaluation's attacks, run and stored beside its grid.

At each eps > 0 of the grid, the evaluation's fixed-budget attacks at that eps (after the EOT
the grid gives a randomized model; transfer attacks left out: their source has the model's
classes, not the readout's two) are run on the binarized model of each of the first `n` samples
(`robustlab.selftest.binarization_test`); a sample passes when any of them finds the planted
adversarial, as the evaluation's worst case would. One row per (model, samples, attacks, norm,
eps), kind "selftest", keyed like every result; a pass rate below `PASS_LEVEL` raises a masking
verdict with advice. `evaluate` runs it through `record_selftests`; experiment files through
`selftest_groups`, `selftest_key` and `selftest_row` (one executor task per row).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import torch

from robustlab.attacks.base import Attack
from robustlab.core.contract import RobustModel, eval_mode
from robustlab.core.digest import canonical, model_digest
from robustlab.core.threat import AttackKind
from robustlab.evaluate.masking import NOT_RUN, MaskingFlag
from robustlab.evaluate.runner import Cell
from robustlab.evaluate.samples import EvalSet
from robustlab.selftest import BinarizationConfig, binarization_test
from robustlab.store.results import ResultKey, ResultStore

SELFTEST_SAMPLES = 100
"""Samples the binarization test runs on by default (the first of the evaluated ones)."""
PASS_LEVEL = 0.9
"""A pass rate below this (on at least `MIN_FEASIBLE` feasible samples) raises the verdict."""
MIN_FEASIBLE = 10
CHECK = "attacks miss a planted adversarial (binarization test)"


def selftest_key(cells: Sequence[Cell], eps: float, model_id: str, digest: str, data: EvalSet, defense: str,
                 n: int, config: BinarizationConfig) -> ResultKey:
    """The key of the binarization row at `eps` for the attacks of `cells` on the first `n` samples."""
    spec = {"name": "binarization", "n": n, "config": asdict(config),
            "attacks": [json.loads(c.attack_key) for c in cells]}
    return ResultKey(model=model_id, defense=defense, attack=canonical(spec), eps=eps, subset=data.subset,
                     norm=cells[0].attack.norm, model_digest=digest, data=data.data_key,
                     samples=data.digest, batch="independent", kind="selftest")


def selftest_groups(cells: Sequence[Cell]) -> list[tuple[float, list[Cell]]]:
    """The cells the binarization test runs at each eps > 0, as (eps, cells) by (norm, eps): the
    fixed-budget cells that are not transfer attacks, each resolved attack once."""
    groups: dict[tuple[str, float], dict[str, Cell]] = defaultdict(dict)
    for c in cells:
        if c.eps is not None and c.eps > 0 and c.attack.kind != AttackKind.TRANSFER:
            groups[(str(c.attack.norm), c.eps)].setdefault(c.attack_key, c)
    return [(eps, list(group.values())) for (_, eps), group in sorted(groups.items())]


def selftest_row(model: RobustModel, x: torch.Tensor, attacks: Sequence[Attack],
                 config: BinarizationConfig) -> tuple[dict[str, Any], dict[str, list]]:
    """The binarization test of `attacks` (one eps and norm) on the images `x`: the row's metrics
    (the summary and its sentence) and per-sample outcomes (feasible, found). Needs no store: the
    experiment executors run it on workers and the driver writes the row."""
    with eval_mode(model):
        result = binarization_test(model, x, list(attacks), config)
    metrics = {**result.summary.as_dict(), "sentence": result.summary.sentence()}
    per_sample = {"feasible": [o.feasible for o in result.samples], "found": [o.found for o in result.samples]}
    return metrics, per_sample


def record_selftests(
    store: ResultStore, model_id: str, model: RobustModel, data: EvalSet, cells: Sequence[Cell], *,
    defense: str = "none", n: int = SELFTEST_SAMPLES, config: BinarizationConfig | None = None,
) -> list[dict[str, Any]]:
    """Run (or read back) the binarization test at every eps > 0 of `cells` (the grid's planned
    cells, EOT included); store each summary with its per-sample outcomes; return the summaries."""
    config = config or BinarizationConfig()
    groups = selftest_groups(cells)
    if not groups or n < 1:
        return []
    digest = model_digest(model)
    x = data.x[:n].to(next(model.parameters()).device)
    out = []
    for eps, group in groups:
        key = selftest_key(group, eps, model_id, digest, data, defense, len(x), config)
        row = store.get(key)
        if row is None:
            metrics, per_sample = selftest_row(model, x, [c.attack for c in group], config)
            store.put(key, metrics, per_sample)
        else:
            metrics = row.metrics
        out.append(metrics)
    return out


def selftest_results(store: ResultStore, models: Sequence[str] | None = None,
                     samples: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """The stored binarization summaries per model (on the sample set `samples` when given), by eps."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in store.rows(kind="selftest"):
        if (models is None or r.key.model in models) and (samples is None or r.key.samples == samples):
            name = r.key.model if r.key.defense == "none" else f"{r.key.model} [{r.key.defense}]"
            out[name].append(r.metrics)
    return {k: sorted(v, key=lambda m: (m["norm"], m["eps"])) for k, v in out.items()}


def selftest_flags(results: dict[str, list[dict[str, Any]]]) -> list[MaskingFlag]:
    """One verdict per model: raised when at some eps the attacks found the planted adversarial on
    fewer than `PASS_LEVEL` of at least `MIN_FEASIBLE` feasible samples."""
    flags = []
    for model, rows in results.items():
        failing = [r for r in rows if r["feasible"] >= MIN_FEASIBLE and r["rate"] < PASS_LEVEL]
        if failing:
            where = "; ".join(r["sentence"] for r in failing)
            flags.append(MaskingFlag(model, CHECK, True, f"{where}. The attacks are too weak for this model: "
                                     "try more steps or restarts, a margin or DLR loss (saturated scores), "
                                     "BPDA through non-differentiable steps, EOT for randomness"))
        else:
            checked = [r for r in rows if r["feasible"] >= MIN_FEASIBLE]
            if checked:
                flags.append(MaskingFlag(model, CHECK, False, "; ".join(r["sentence"] for r in checked)))
            else:
                flags.append(MaskingFlag(model, CHECK, False, f"fewer than {MIN_FEASIBLE} feasible samples at "
                                         "every eps: the readout could not plant an adversarial", NOT_RUN))
    return flags


INDICATOR_CHECK = "indicators of attack failure"
INDICATOR_SHARE = {"incomplete_optimization": 0.5}
"""Share of a cell's failed samples (at least `MIN_FAILED`) an indicator must exceed to raise: 10%,
half for incomplete optimization (a loss that still creeps up at the end of a correct run is
common; a too-small step raises it on nearly every sample)."""
MIN_FAILED = 5
_ADVICE = {
    "unavailable_gradients": "zero or non-finite gradients: BPDA through non-differentiable steps, a margin loss",
    "silent_success": "an adversarial point found mid-run was not returned: EOT for randomness",
    "unstable_predictions": "the decision changes under tiny noise: EOT over the randomness",
    "incomplete_optimization": "the loss still rose at the end: more steps or a larger step",
    "transfer_failure": "the transfer attack fooled its source only: attack the target itself",
}


def _worst_by_budget(rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], float]:
    """The lowest robust accuracy of any one attack per (model, defense, samples, norm, eps)
    (the per-sample worst-case rows, which combine attacks, left out)."""
    worst: dict[tuple[Any, ...], float] = {}
    for r in rows:
        if r.get("eps") is None or r.get("robust_accuracy") is None or r.get("attack") == "worst-case":
            continue
        budget = (r["model"], r.get("defense", "none"), r.get("samples"), r.get("norm"), r.get("eps"))
        worst[budget] = min(worst.get(budget, 1.0), float(r["robust_accuracy"]))
    return worst


_OPTIMIZING = frozenset(k for k in AttackKind if k.optimizes)
"""The kinds whose search can stop short (`AttackKind.optimizes`): a stored row's kind string is one of them."""


def indicator_flags(rows: list[dict[str, Any]]) -> list[MaskingFlag]:
    """One verdict per model from its cells' indicators (`evaluate_cell`, metrics "indicators"):
    raised when an indicator fires on more than its `INDICATOR_SHARE` of a cell's failed samples;
    incomplete optimization only counts for iterative attacks and ensembles (a single step is
    incomplete by design), non-converging restarts never raise (a hint, not a failure), and only
    cells the worst case rests on count: an attack that another one beat at the same budget
    (same model, defense, samples, norm and eps) did not set the number a user reads."""
    by_model: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    worst = _worst_by_budget(rows)
    for r in rows:
        ind = r.get("indicators")
        if not ind:
            continue
        model = r["model"] if r.get("defense", "none") == "none" else f"{r['model']} [{r['defense']}]"
        seen.add(model)
        budget = (r["model"], r.get("defense", "none"), r.get("samples"), r.get("norm"), r.get("eps"))
        if r.get("robust_accuracy") is not None and r["robust_accuracy"] > worst.get(budget, 1.0):
            continue  # another attack went lower at this budget: the worst case does not rest on this one
        for name, advice in _ADVICE.items():
            v = ind.get(name)
            share = INDICATOR_SHARE.get(name, 0.1)
            if v is None or v["failed"] < MIN_FAILED or v["raised"] <= share * v["failed"]:
                continue
            if name == "incomplete_optimization" and r.get("kind") not in _OPTIMIZING:
                continue
            by_model[model].append(f"{r['attack']} eps {r['eps']:g}: {name.replace('_', ' ')} on "
                                   f"{v['raised']}/{v['failed']} failed samples ({advice})")
    return [MaskingFlag(m, INDICATOR_CHECK, bool(by_model[m]),
                        "; ".join(by_model[m]) or "no indicator raised on the attacks' failures")
            for m in sorted(seen)]
