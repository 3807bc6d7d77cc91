"""What a prepared grid will do and cost, said before anything runs (`run --dry-run`, and the
plan line `evaluate` prints): the counts of the planner (trainings, defended models to build,
white-box cells, transfer cells, self-tests, probes) and an upper bound on the model passes.

The bound counts, per sample, each attack's own `planned_passes()` (forward+backward and
forward-only passes: steps x restarts x targets, EOT draws, an ensemble's members; an eps 0
cell is one clean forward pass) times the samples it runs on: every white-box cell on its
data set's evaluated samples, one run of the source attack per transfer group (plus one
forward pass per target), and each self-test's attacks on its `self_test` samples. Training
counts one forward+backward pass per training image per epoch, times (1 + attack steps) for
adversarial training when the steps are given. Not counted: early stopping (which only makes it
less), the EOT a randomized model gets once built (it is not known before), the probes and
identification checks (a few passes per sample), and the binarization test's readout fit. An
attack that cannot bound its passes (an adaptive search) makes its total unknown (None).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from robustlab.experiment.plan import NONE
from robustlab.experiment.tasks import dataset_for

if TYPE_CHECKING:
    from robustlab.experiment.runner import PreparedGrid

Passes = dict[str, int | None]


def _add(total: Passes, passes: tuple[int, int] | None, n: int) -> None:
    if passes is None or total["fb"] is None or total["f"] is None:
        total["fb"] = total["f"] = None
        return
    total["fb"] += passes[0] * n
    total["f"] += passes[1] * n


def _passes(cell: Any) -> tuple[int, int] | None:
    if not cell.eps:
        return (0, 1) if cell.eps is not None else cell.attack.planned_passes()
    return cell.attack.planned_passes()


def estimate(prepared: PreparedGrid) -> dict[str, Any]:
    """The plan's counts and the pass bound (see the module docstring for what it counts)."""
    spec, plan = prepared.spec, prepared.plan

    def n_eval(model_id: str) -> int:
        return len(prepared.samples[spec.dataset(spec.model(model_id).data).key])

    cells: Passes = {"fb": 0, "f": 0}
    for c in plan.cells:
        _add(cells, _passes(prepared.cells[(c.attack, c.eps)]), n_eval(c.model))
    transfer: Passes = {"fb": 0, "f": 0}
    groups: dict[tuple[str, str, float], int] = {}
    for t in plan.transfers:
        if t.white_box is None:
            groups[(t.source, t.attack, t.eps)] = groups.get((t.source, t.attack, t.eps), 0) + 1
    for (source, attack, eps), targets in groups.items():
        n = n_eval(source)
        _add(transfer, _passes(prepared.cells[(attack, eps)]), n)
        _add(transfer, (0, targets), n)
    selftests: Passes = {"fb": 0, "f": 0}
    n_selftests = 0
    owners = sorted({(c.model, c.defense) for c in plan.cells})
    for model, defense in owners if spec.self_test else ():
        n = min(spec.self_test, n_eval(model))
        for eps in sorted({c.eps for c in plan.cells_of(model, defense) if c.eps}):
            n_selftests += 1
            for c in plan.cells_of(model, defense):
                if c.eps == eps:
                    _add(selftests, _passes(prepared.cells[(c.attack, eps)]), n)
    training: Passes = {"fb": 0, "f": 0}
    trainings = []
    for job in plan.trains:
        m = job.model
        n_train = len(dataset_for(spec.dataset(m.data)).y_train)
        train = m.train.resolved(n_train, m.model.get("head", "softmax"))  # the driver's defaults
        adv, epochs = train.adv, int(train.epochs or 0)
        steps = None if adv is None else adv.steps
        per = None if adv is not None and steps is None else 1 + (steps or 0)
        _add(training, None if per is None else (per * epochs, 0), n_train)
        trainings.append({"model": m.id, "epochs": epochs, "images": n_train,
                          "adversarial": None if adv is None else adv.method})
    counts = plan.counts()
    return {
        "trainings": len(plan.trains), "given": sum(m.given is not None for m in spec.models),
        "defenses": counts["defenses"], "cells": counts["cells"], "transfer": counts["transfer"],
        "selftests": n_selftests, "probes": len(owners),
        "samples": {k: len(s) for k, s in prepared.samples.items()},
        "passes": {"cells": cells, "transfer": transfer, "selftests": selftests, "training": training},
        "training": trainings,
        "models": [m.id for m in spec.models],
        "defended": [f"{d.model} + {d.defense}" for d in plan.defenses if d.defense != NONE],
        "run_dir": str(prepared.run_dir), "run_dir_state": prepared.state,
    }


def _count(p: Passes) -> str:
    if p["fb"] is None or p["f"] is None:
        return "passes unknown (an attack without a fixed budget)"
    return f"at most {p['fb']:,} forward+backward and {p['f']:,} forward passes"


def describe_plan(est: dict[str, Any]) -> str:
    """The plan in a few lines (`estimate`'s counts and bounds)."""
    samples = ", ".join(f"{k}: {n}" for k, n in est["samples"].items())
    lines = [
        f"plan: {est['trainings']} trainings, {est['given']} given models, {est['defenses']} defended models to "
        f"build, {est['cells']} cells, {est['transfer']} transfer cells, {est['selftests']} self-tests, "
        f"{est['probes']} probes; evaluated samples {samples}",
        f"  cells: {_count(est['passes']['cells'])}",
    ]
    if est["transfer"]:
        lines.append(f"  transfer: {_count(est['passes']['transfer'])}")
    if est["selftests"]:
        lines.append(f"  self-tests: {_count(est['passes']['selftests'])}")
    if est["trainings"]:
        lines.append(f"  training: {_count(est['passes']['training'])}")
    lines.append("  (upper bounds: early stopping makes them less; EOT for a randomized model is not counted)")
    return "\n".join(lines)
