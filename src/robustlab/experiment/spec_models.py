"""Parsing the `data:` and `models:` sections of an experiment file: data sets with ids, model
entries with their training, sweeps (one model per point, every swept key checked against the
model config or its training) and seeds (one model per seed)."""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import json
import math
from collections import Counter
from typing import Any

from robustlab.core.errors import ConfigError, RobustlabError
from robustlab.data.spec import DataSpec
from robustlab.experiment.limits import Limits, plain_name, short_repr
from robustlab.experiment.spec_parsing import budget_value, fail, known_keys
from robustlab.experiment.spec_parts import SEED_TAG, GivenModel, ModelSpec
from robustlab.models.config import ModelConfig
from robustlab.store.checkpoints import checkpoint_dir, read_checkpoint_config
from robustlab.train.trainer import TrainConfig


def parse_data(doc: Any) -> tuple[DataSpec, ...]:
    items = doc if isinstance(doc, list) else [doc or {}]
    out = []
    for i, d in enumerate(items):
        out.append(DataSpec.from_dict(d, f"data[{i}]" if isinstance(doc, list) else "data"))
    keys = [d.key for d in out]
    if len(out) > 1:  # each key names a directory: checkpoints/<data id>/<model id>
        for i, key in enumerate(keys):
            plain_name(key, f"data[{i}] id (give each data set an id)")
    if len(set(keys)) != len(keys):
        fail("data", f"data sets need distinct ids, got {keys}")
    return tuple(out)


def _objective_params(model: dict[str, Any], train: dict[str, Any]) -> set[str] | None:
    """Parameters the model's training objective takes (None: it takes any)."""
    from robustlab.models.heads import HEADS
    from robustlab.train.objectives import OBJECTIVES

    name = train.get("objective")
    if name is None:
        head = HEADS.get(model.get("head", "softmax"))
        name = getattr(head, "objective", "cross_entropy")
    if str(name) not in OBJECTIVES:
        return None
    factory = OBJECTIVES.get(str(name))
    params = inspect.signature(factory).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return {p for p in params if p != "model"}


def _callable_params(fn: Any) -> set[str] | None:
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return set(params)


def _check_sweep_key(where: str, key: str, model: dict[str, Any], train: dict[str, Any]) -> None:
    """`key` must name something the model config or its training has; ConfigError otherwise."""
    parts = key.split(".")
    if parts[0] == "model":
        from robustlab.models.backbones import BACKBONES
        from robustlab.models.heads import HEADS

        top = {f.name for f in dataclasses.fields(ModelConfig)} - {"num_classes", "input_shape"}
        if len(parts) < 2 or parts[1] not in top:
            fail(where, f"sweep over unknown key {key!r}: model keys are {sorted(top)}")
        if parts[1] in ("backbone_args", "head_args") and len(parts) == 3:
            fn = (BACKBONES.get(model.get("backbone", "")) if parts[1] == "backbone_args"
                  else HEADS.get(model.get("head", "softmax")))
            known = _callable_params(fn)
            if known is not None and parts[2] not in known:
                fail(where, f"sweep over unknown key {key!r}: {parts[1]} takes {sorted(known - {'self'})}")
        return
    if parts[0] == "train":
        parts = parts[1:]
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    if not parts or parts[0] not in fields:
        fail(where, f"sweep over unknown key {key!r}: train keys are {sorted(fields)}")
    if parts[0] == "objective_args" and len(parts) == 2:
        known = _objective_params(model, train)
        if known is not None and parts[1] not in known:
            fail(where, f"sweep over unknown key {key!r}: the objective takes {sorted(known)}")
    elif parts[0] == "adv" and len(parts) > 1:
        from robustlab.train.adversarial import AdvConfig

        known_adv = {f.name for f in dataclasses.fields(AdvConfig)}
        if parts[1] not in known_adv or (len(parts) > 2 and parts[1] != "args"):
            fail(where, f"sweep over unknown key {key!r}: adv keys are {sorted(known_adv)}")
    elif len(parts) > 1:
        factory = fields[parts[0]].default_factory
        if factory is dataclasses.MISSING or not isinstance(factory(), dict):
            fail(where, f"sweep over unknown key {key!r}: {parts[0]} has no sub-keys")


def _set_path(doc: dict[str, Any], parts: list[str], value: Any) -> None:
    for p in parts[:-1]:
        nxt = doc.get(p)
        doc[p] = dict(nxt) if isinstance(nxt, dict) else {}
        doc = doc[p]
    doc[parts[-1]] = value


def _expand_sweep(where: str, entry: dict[str, Any]) -> list[tuple[dict, dict, tuple]]:
    """(model dict, train dict, swept pairs) for every point of the entry's sweep grid."""
    model, train = dict(entry["model"]), dict(entry.get("train") or {})
    sweep = entry.get("sweep")
    if not sweep:
        return [(model, train, ())]
    if not isinstance(sweep, dict) or not all(isinstance(v, list) and v for v in sweep.values()):
        fail(where, "sweep must map keys to non-empty lists of values")
    for key in sweep:
        _check_sweep_key(where, str(key), model, train)
    out = []
    for point in itertools.product(*sweep.values()):
        values = tuple(budget_value(where, str(k), v) for k, v in zip(sweep, point, strict=True))  # 8/255 -> float
        m, t = json.loads(json.dumps(model)), json.loads(json.dumps(train))
        for key, value in zip(sweep, values, strict=True):
            parts = str(key).split(".")
            if parts[0] == "model":
                _set_path(m, parts[1:], value)
            else:
                _set_path(t, parts[1:] if parts[0] == "train" else parts, value)
        out.append((m, t, tuple(zip(map(str, sweep), values, strict=True))))
    return out


def _train_config(where: str, args: dict[str, Any]) -> TrainConfig:
    args = dict(args)
    if isinstance(args.get("adv"), dict):  # adv: {eps: 8/255, eps_min: 2/255}
        args["adv"] = {k: budget_value(f"{where}.train.adv", k, v) for k, v in args["adv"].items()}
    if "milestones" in args:
        if not isinstance(args["milestones"], list):
            fail(f"{where}.train", f"milestones must be a list of epochs, got {short_repr(args['milestones'])}")
        args["milestones"] = tuple(args["milestones"])
    try:
        return TrainConfig(**args)
    except TypeError as exc:
        fail(f"{where}.train", str(exc))
    raise AssertionError  # unreachable


def parse_seeds(where: str, value: Any) -> tuple[int, ...]:
    """A `seeds:` list: distinct integers >= 0."""
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)):
        fail(where, f"seeds must be a non-empty list of integers >= 0, got {short_repr(value)}")
    if len(set(value)) != len(value):
        fail(where, f"seeds must be distinct, got {short_repr(value)}")
    return tuple(value)


def parse_models(doc: Any, datasets: tuple[DataSpec, ...], limits: Limits,
                  seeds: tuple[int, ...] | None = None) -> tuple[ModelSpec, ...]:
    if not isinstance(doc, list) or not doc:
        raise ConfigError("an experiment needs at least one model (models: a list)")
    data_ids = [d.key for d in datasets]
    out: list[ModelSpec] = []
    for i, m in enumerate(doc):
        where = f"models[{i}]"
        if isinstance(m, dict) and "checkpoint" in m:
            out += given_checkpoint(where, m, datasets)
            continue
        if not isinstance(m, dict) or not isinstance(m.get("model"), dict):
            fail(where, "needs a 'model' mapping (backbone, head, ...) or a 'checkpoint' to evaluate")
        known_keys(where, m, {"id", "model", "train", "sweep", "data", "seeds"})
        if not isinstance(m.get("train") or {}, dict):
            fail(where, f"train must be a mapping of training options, got {short_repr(m['train'])}")
        seed_list = parse_seeds(f"{where}.seeds", m["seeds"]) if "seeds" in m else seeds
        base_id = plain_name(m.get("id") or f"{m['model'].get('backbone')}-{m['model'].get('head', 'softmax')}",
                             f"{where}: id")
        only = m.get("data")
        only = [only] if isinstance(only, str) else only
        if only is not None and (not isinstance(only, list) or not all(isinstance(k, str) for k in only)
                                 or set(only) - set(data_ids)):
            fail(where, f"data must name data sets of the file ({data_ids}), got {short_repr(only)}")
        sweep = m.get("sweep")
        points = math.prod(len(v) for v in sweep.values()) if isinstance(sweep, dict) and all(
            isinstance(v, list) for v in sweep.values()) else 1
        limits.check(f"{where}: models to train (sweep points x seeds x data sets, counting the entries before)",
                     len(out) + points * max(1, len(seed_list or ()))
                     * (len(datasets) if only is None else len(set(only))),
                     "trainings", "--max-trainings")
        for model, train, swept in _expand_sweep(where, m):
            tag = ",".join(f"{k.split('.')[-1]}={v}" for k, v in swept)
            mid = f"{base_id}({tag})" if swept else base_id  # no brackets: rich reads them as markup
            plain_name(mid, f"{where}: the id of sweep point {short_repr(mid)}")
            if seed_list is not None and "seed" in train:
                fail(where, "give the training seed either as train.seed or as seeds:, not both")
            for seed in seed_list or (None,):
                cfg = _train_config(where, train if seed is None else {**train, "seed": seed})
                several = seed_list is not None and len(seed_list) > 1
                for d in datasets:
                    if only is not None and d.key not in only:
                        continue
                    full = mid if len(datasets) == 1 else f"{d.key}/{mid}"
                    out.append(ModelSpec(f"{full}{SEED_TAG}{seed}" if several else full, model, cfg, d.key, swept,
                                         base_id, seed if several else None))
    ids = [m.id for m in out]
    if len(set(ids)) != len(ids):
        twice = sorted(k for k, n in Counter(ids).items() if n > 1)[:5]
        fail("models", f"model ids must be unique, got {twice} more than once")
    return tuple(out)


def given_checkpoint(where: str, entry: dict[str, Any], datasets: tuple[DataSpec, ...]) -> list[ModelSpec]:
    """A ``{checkpoint: DIR, id: ..., data: ...}`` entry: the checkpoint evaluated as it is (never
    trained), on each data set it names (default: every one). Its id defaults to the checkpoint's
    folder name, the name `robustlab evaluate` gives it, so both label it alike."""
    known_keys(where, entry, {"id", "checkpoint", "data"})
    path = entry["checkpoint"]
    if not isinstance(path, str) or not path.strip() or "\0" in path:
        fail(where, f"checkpoint must be a path to a checkpoint directory, got {short_repr(path)}")
    try:
        directory = checkpoint_dir(path)
        doc = read_checkpoint_config(directory)
    except RobustlabError as exc:
        fail(where, str(exc))
    base_id = plain_name(entry.get("id") or directory.resolve().name, f"{where}: id")
    data_ids = [d.key for d in datasets]
    only = entry.get("data")
    only = [only] if isinstance(only, str) else only
    if only is not None and (not isinstance(only, list) or set(only) - set(data_ids)):
        fail(where, f"data must name data sets of the file ({data_ids}), got {short_repr(only)}")
    given = GivenModel("checkpoint", path=str(directory))
    return [ModelSpec(base_id if len(datasets) == 1 else f"{d.key}/{base_id}", dict(doc["model"]), data=d.key,
                      family=base_id, given=given)
            for d in datasets if only is None or d.key in only]
