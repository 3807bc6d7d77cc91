"""The transfer matrix of an experiment: adversarials crafted on a source model, judged on a target.

Each off-diagonal cell is a row of the results store, keyed by the target model and the
attack ``{"name": "transfer", "attack": <the source attack's spec>, "from": <source key>}``,
so it joins the target's worst case per sample like any other attack (a black-box attack
stronger than the white-box ones is then visible, and flagged by the masking checks).
A diagonal cell is the white-box cell itself (`white_box_key`): never computed twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from robustlab.core.contract import REJECT, RobustModel, batched_predict
from robustlab.core.norms import distance
from robustlab.core.results import AttackResult
from robustlab.evaluate.cell_extras import cell_extras
from robustlab.evaluate.metrics import cell_metrics, per_sample_outcomes
from robustlab.evaluate.runner import AttackSpec, run_attack
from robustlab.experiment.plan import Plan, TransferCell
from robustlab.experiment.spec import DataSpec, ExperimentSpec
from robustlab.experiment.tasks import CheckpointBlob, EvalOutput, ModelSource, Runtime, _model_for, _runtime, eval_data
from robustlab.store.results import ResultKey, canonical


def transfer_attack_key(source_key: str, spec: AttackSpec) -> str:
    """The attack part of a transfer cell's result key."""
    return canonical({"name": "transfer", "attack": json.loads(spec.key()), "from": source_key})


def cell_key(cell: TransferCell, spec: ExperimentSpec, keys: Mapping[str, str], subset: str = "test") -> ResultKey:
    """The store key holding `cell`: the white-box row on the diagonal, else the transfer row."""
    attack = spec.attack(cell.attack).spec
    if cell.white_box is not None:
        return ResultKey(keys[cell.target], "none", attack.key(), cell.eps, subset)
    defense = "none" if cell.target_defense == "none" else spec.defense(cell.target_defense).result_key
    return ResultKey(keys[cell.target], defense, transfer_attack_key(keys[cell.source], attack), cell.eps, subset)


def plan_index(spec: ExperimentSpec, plan: Plan, keys: Mapping[str, str], subset: str = "test") -> dict:
    """What the report needs to find each planned cell in the store: model ids -> keys (with
    data set, sweep family and swept values), attacks, defenses, every white-box and transfer
    cell with its full result key, and the claims. Cells of models not trained yet are left out."""
    def key_list(k: ResultKey) -> list:
        return list(k.as_tuple())

    cells = []
    for c in plan.cells:
        if c.model in keys:
            a = spec.attack(c.attack)
            d = "none" if c.defense == "none" else next(x.result_key for x in spec.defenses if x.id == c.defense)
            k = ResultKey(keys[c.model], d, a.spec.key(), -1.0 if c.eps is None else c.eps, subset)
            cells.append({"model": c.model, "defense": c.defense, "attack": c.attack, "eps": c.eps,
                          "key": key_list(k)})
    transfers = [{"source": t.source, "target": t.target, "attack": t.attack, "eps": t.eps,
                  "defense": t.target_defense, "key": key_list(cell_key(t, spec, keys, subset))}
                 for t in plan.transfers if t.source in keys and t.target in keys]
    return {
        "models": {m.id: {"key": keys[m.id], "data": m.data, "family": m.family,
                          "swept": [list(p) for p in m.swept]} for m in spec.models if m.id in keys},
        "attacks": {a.id: {"label": a.spec.label, "name": a.spec.name, "eps": list(a.eps),
                           "minimum_norm": a.minimum_norm} for a in spec.attacks},
        "defenses": {d.id: d.result_key for d in spec.defenses},
        "cells": cells,
        "transfers": transfers,
        "claims": [dict(c.__dict__) for c in spec.claims],
    }


def judge_transfer(target: RobustModel, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor,
                   norm: str, batch_size: int = 256) -> tuple[dict[str, list], dict]:
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
    with _runtime(task.runtime) as device:
        x, y = eval_data(task.data)
        src = _model_for(task.source, source_blob, device)
        attack = task.attack.build(task.eps)
        x_adv = run_attack(attack, src, x, y, task.batch_size).x_adv
        blobs = target_blobs or (None,) * len(task.targets)
        out = []
        for (source, key), blob in zip(task.targets, blobs, strict=True):
            target = _model_for(source, blob, device)
            per_sample, metrics = judge_transfer(target, x, y, x_adv, attack.norm, task.batch_size)
            out.append(EvalOutput(key, metrics, per_sample))
        return out
