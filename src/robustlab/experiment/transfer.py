"""The transfer matrix of an experiment: adversarials crafted on a source model, judged on a target.

Each off-diagonal cell is a row of the results store, keyed by the target model and the
attack ``{"name": "transfer", "attack": <the source attack's spec>, "from": <source key>}``,
so it joins the target's worst case per sample like any other attack (a black-box attack
stronger than the white-box ones is then visible, and flagged by the masking checks).
A diagonal cell is the white-box cell itself: never computed twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace

import torch

from robustlab.core.contract import REJECT, RobustModel, batched_predict
from robustlab.core.digest import canonical
from robustlab.core.norms import distance
from robustlab.core.results import AttackResult
from robustlab.core.threat import Norm
from robustlab.data.spec import DataSpec
from robustlab.evaluate.cell_extras import cell_extras
from robustlab.evaluate.metrics import cell_metrics, per_sample_outcomes
from robustlab.evaluate.runner import AttackSpec, Cell, run_attack
from robustlab.evaluate.samples import EvalSet
from robustlab.experiment.plan import Plan, TransferCell
from robustlab.experiment.spec import ExperimentSpec
from robustlab.experiment.tasks import (
    CheckpointBlob,
    EvalOutput,
    ModelSource,
    Runtime,
    eval_data,
    model_for,
    task_runtime,
)
from robustlab.store.results import ResultKey


def transfer_key(target: ResultKey, cell: Cell, source_key: str, source_digest: str) -> ResultKey:
    """The row of a transfer cell: the target's white-box row of `cell` (`target`), its attack
    replaced by ``{"name": "transfer", "attack": <the resolved source attack>, "from": <source
    model key>, "from_digest": <source weights digest>}``."""
    attack = canonical({"name": "transfer", "attack": json.loads(cell.attack_key), "from": source_key,
                        "from_digest": source_digest})
    return replace(target, attack=attack)


RowKey = Callable[[str, str, str, "float | None"], "ResultKey | None"]
"""row_key(model id, defense id, attack id, eps): a white-box cell's row, None until it is known."""


def plan_index(spec: ExperimentSpec, plan: Plan, keys: Mapping[str, str], row_key: RowKey,
               transfer_row_key: Callable[[TransferCell], ResultKey | None],
               samples: Mapping[str, EvalSet]) -> dict:
    """What the report needs to find each planned cell in the store: model ids -> keys (with
    data set, its samples digest, sweep family and swept values), attacks, defenses, every
    white-box and transfer cell with its full result key (a field mapping), and the claims.
    Cells whose models (or defended models) are not ready yet are left out."""
    cells = []
    for c in plan.cells:
        k = row_key(c.model, c.defense, c.attack, c.eps)
        if k is not None:
            cells.append({"model": c.model, "defense": c.defense, "attack": c.attack, "eps": c.eps,
                          "key": asdict(k)})
    transfers = []
    for t in plan.transfers:
        k = transfer_row_key(t)
        if k is not None:
            transfers.append({"source": t.source, "target": t.target, "attack": t.attack, "eps": t.eps,
                              "defense": t.target_defense, "key": asdict(k)})
    return {
        "models": {m.id: {"key": keys[m.id], "data": m.data, "family": m.family, "group": m.group, "seed": m.seed,
                          "samples": samples[spec.dataset(m.data).key].digest,
                          "swept": [list(p) for p in m.swept]} for m in spec.models if m.id in keys},
        "attacks": {a.id: {"label": a.spec.label, "name": a.spec.name, "eps": list(a.eps),
                           "minimum_norm": a.minimum_norm} for a in spec.attacks},
        "defenses": {d.id: d.key() for d in spec.defenses},
        "cells": cells,
        "transfers": transfers,
        "claims": [{**c.__dict__, "deviations": list(c.deviations)} for c in spec.claims],
        "deviations": list(spec.deviations),
        "data": {d.key: d.to_dict() for d in spec.datasets},
    }


def judge_transfer(target: RobustModel, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor,
                   norm: Norm, batch_size: int = 256) -> tuple[dict[str, list], dict]:
    """(per-sample record, metrics) of adversarials `x_adv` of (x, y) shown to `target`: success
    is a wrong class by the target's real decision (a rejection is Detected, not Success)."""
    clean = batched_predict(target, x, batch_size)
    pred = batched_predict(target, x_adv, batch_size)
    result = AttackResult(
        x_adv=x_adv, success=(pred != y) & (pred != REJECT), distance=distance(x_adv, x, norm),
        queries=torch.zeros(len(y), dtype=torch.int64), prediction=pred,
    )
    per_sample = per_sample_outcomes(x, y, clean, result)
    metrics = cell_metrics(per_sample)
    extra, extra_metrics = cell_extras(target, x, y, result, batch_size=batch_size)
    per_sample.update(extra)
    metrics.update(extra_metrics)
    return per_sample, metrics


@dataclass(frozen=True)
class TransferTask:
    """Craft `attack` at `eps` on `source`, judge the adversarials on each of `targets`
    ((model, the row it fills) pairs), on the data's evaluation split."""

    source: ModelSource
    targets: tuple[tuple[ModelSource, ResultKey], ...]
    data: DataSpec
    attack: AttackSpec
    eps: float
    batch_size: int = 256
    runtime: Runtime = field(default_factory=Runtime)

    @property
    def label(self) -> str:
        return f"transfer {self.source.key.split(':')[0]} {self.attack.label} eps={self.eps:g}"


def run_transfer_task(task: TransferTask, source_blob: CheckpointBlob | None = None,
                      *target_blobs: CheckpointBlob | None) -> list[EvalOutput]:
    """One attack run on the source, one row per target (a pure task: no store)."""
    with task_runtime(task.runtime) as device:
        x, y = eval_data(task.data)
        src = model_for(task.source, source_blob, device)
        attack = task.attack.build(task.eps)
        x_adv = run_attack(attack, src, x, y, task.batch_size).x_adv
        blobs = target_blobs or (None,) * len(task.targets)
        out = []
        for (source, key), blob in zip(task.targets, blobs, strict=True):
            target = model_for(source, blob, device)
            per_sample, metrics = judge_transfer(target, x, y, x_adv, attack.norm, task.batch_size)
            out.append(EvalOutput(key, metrics, per_sample))
        return out
