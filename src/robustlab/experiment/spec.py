"""The experiment spec: data sets, models (config + training, sweeps), defenses, attacks with
their eps grids, a transfer matrix and the published claims the experiment reproduces.

Read from YAML/JSON or built in code. Everything is validated here, before any training:
an unknown key, a transfer source that is not a model of the file, a sweep over a key the
model or its training does not have, or a claim about a cell the grid does not hold is one
`ConfigError` naming the problem.

```yaml
name: paper004
data: {id: fmnist, name: fashion-mnist, n_eval: 300}     # or a list of such mappings
models:
  - {id: softmax, model: {backbone: cnn6, head: softmax}, train: {epochs: 2}}
  - id: mct
    model: {backbone: lenet, head: mct}
    sweep: {objective_args.sigma: [0.05, 0.1]}            # -> mct(sigma=0.05), mct(sigma=0.1)
defenses: [{name: squeeze, bits: 4}]                       # every model, plus "none"
attacks: [fgsm, {name: pgd, steps: 40, eps: [0.1, 0.3]}]  # eps per attack (default: `eps:`)
eps: [0, 0.1]
transfer: {sources: [softmax, mct], targets: [softmax, mct], attacks: [pgd]}
seeds: [0, 1, 2]                                           # each model trained once per seed
claims:
  - {model: softmax, attack: pgd, eps: 0.3, published: 0.0, tolerance: 0.05, ref: "Table 2"}
  - {model: mct, than: softmax, attack: worst-case, eps: 0.1, ref: "MCT more robust"}
deviations: ["LeNet instead of the paper's CNN-6"]         # printed beside every verdict
self_test: {samples: 50}                                   # binarization test size (false: off)
```

`seeds:` (for the file, or per model) trains each model once per seed: with more than one,
its ids become `<id>@seed<N>` (the seed is `train.seed`, so it enters the spec digest and the
model key); one seed, or none, leaves ids and keys as they were. Claims, attack and defense
filters and transfer entries name the model without the seed suffix (every seed).

`self_test:` runs the binarization test (`robustlab.evaluate.selftests`) of each (model,
defense)'s attacks at every eps > 0 on the first `samples` evaluated images (default
`SELFTEST_SAMPLES`, capped at ``n_eval``); ``false`` turns it off.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import itertools
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustlab.attacks.registry import get_attack_class
from robustlab.core.errors import ConfigError
from robustlab.core.plugins import check_module_name, import_plugins, load_entry_points
from robustlab.core.threat import parse_eps
from robustlab.core.validation import check_int, check_number
from robustlab.data.spec import DataSpec
from robustlab.evaluate.runner import DEFAULT_ATTACKS, AttackSpec
from robustlab.evaluate.selftests import SELFTEST_SAMPLES
from robustlab.experiment.executors.base import EXECUTORS
from robustlab.experiment.limits import Limits, plain_data, plain_name, read_document, short_repr
from robustlab.models.config import ModelConfig
from robustlab.train.trainer import TrainConfig

WORST = "worst-case"
METRICS = ("robust_accuracy", "clean_accuracy", "success_rate", "detection_rate", "detection_auc",
           "mean_confidence", "mean_mse", "mean_ssim", "mean_ms_ssim")


@dataclass(frozen=True)
class ModelSpec:
    """One model of the experiment: an id, a partial model config, its training, and (after
    sweep expansion) the swept values and the entry it came from."""

    id: str
    model: dict[str, Any]
    train: TrainConfig = field(default_factory=TrainConfig)
    data: str | None = None
    swept: tuple[tuple[str, Any], ...] = ()
    family: str | None = None
    seed: int | None = None

    @property
    def group(self) -> str:
        """The id without its seed suffix: every seed of one model shares it."""
        return self.id if self.seed is None else self.id.rsplit(SEED_TAG, 1)[0]

    def model_config(self, num_classes: int, input_shape: tuple[int, int, int]) -> ModelConfig:
        full = {"head": "softmax", "num_classes": num_classes, "input_shape": list(input_shape), **self.model}
        return ModelConfig.from_dict(full)

    def digest(self, data: DataSpec, num_classes: int, input_shape: tuple[int, int, int]) -> str:
        blob = json.dumps(
            {
                "model": self.model_config(num_classes, input_shape).to_dict(),
                "train": self.train.to_dict(),
                "data": data.to_dict(),
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


SEED_TAG = "@seed"
"""Model ids of an experiment with several seeds end in ``@seed<N>``."""


@dataclass(frozen=True)
class ExecutorSpec:
    """Where the grid's tasks run. "local": in this process, one after another (no Ray import).
    "ray": one Ray task per training job and per cell; `address` joins a running cluster
    (None starts an embedded local instance with `local_cpus` CPUs, default all).
    `num_cpus` / `num_gpus`: resources of each evaluation task (and of each training task
    unless `train_cpus` / `train_gpus` are given). `storage`: a directory that the driver and
    every worker see; checkpoints are written there instead of travelling as bytes.
    `max_retries`: how often Ray reruns a task whose worker died. `connect_timeout`: seconds
    to wait for the cluster at `address` to answer before giving up (> 0).

    `storage` is the one path a file may name outside the run directory (a mount every worker
    sees): it must be absolute, and only ``<storage>/<name>/<model id>-<digest>/`` is written."""

    name: str = "local"
    address: str | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    train_cpus: float | None = None
    train_gpus: float | None = None
    storage: str | None = None
    local_cpus: int | None = None
    max_retries: int = 3
    connect_timeout: float = 30.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", EXECUTORS.canonical(self.name))
        for label in ("num_cpus", "num_gpus", "train_cpus", "train_gpus"):
            value = getattr(self, label)
            if value is not None:
                check_number(value, f"executor.{label}", 0.0)
        if self.local_cpus is not None:
            check_int(self.local_cpus, "executor.local_cpus", 1)
        check_int(self.max_retries, "executor.max_retries", 0)
        check_number(self.connect_timeout, "executor.connect_timeout", 0.0, strict=True)
        for label in ("address", "storage"):
            value = getattr(self, label)
            if value is not None and (not isinstance(value, str) or not value.strip() or "\0" in value):
                raise ConfigError(f"executor.{label} must be a non-empty string, got {short_repr(value)}")
        if self.storage is not None and not Path(self.storage).is_absolute():
            raise ConfigError(f"executor.storage must be an absolute path (every worker sees it), "
                              f"got {short_repr(self.storage)}")

    @classmethod
    def from_dict(cls, doc: Any) -> ExecutorSpec:
        if isinstance(doc, str):
            doc = {"name": doc}
        if not isinstance(doc, dict):
            raise ConfigError("executor must be a name (local, ray) or a mapping with a name")
        try:
            return cls(**doc)
        except TypeError as exc:
            raise ConfigError(f"executor: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class GridAttack:
    """An attack of the grid: its id (unique in the file), spec, eps grid (minimum-norm
    attacks have none: they run once and report distances), the models it applies to (None =
    every model; e.g. an adaptive loss that only a PCL head has) and the defenses (ids, "none"
    for the undefended model; None = all)."""

    id: str
    spec: AttackSpec
    eps: tuple[float, ...]
    models: tuple[str, ...] | None = None
    defenses: tuple[str, ...] | None = None

    def applies_to(self, model: ModelSpec, defense: str = "none") -> bool:
        in_models = self.models is None or bool({model.id, model.group, model.family} & set(self.models))
        return in_models and (self.defenses is None or defense in self.defenses)

    @property
    def minimum_norm(self) -> bool:
        return get_attack_class(self.spec.name).minimum_norm


@dataclass(frozen=True)
class DefenseSpec:
    """A defense of the `defenses:` axis: id, registry name, its arguments, the models it
    applies to (None = every model), and whether its non-adaptive cells are planned too
    (adversarials of the undefended model shown to the defended one)."""

    id: str
    name: str
    args: dict[str, Any]
    models: tuple[str, ...] | None = None
    non_adaptive: bool = False

    def key(self) -> str:
        return json.dumps({"name": self.name, **self.args}, sort_keys=True, separators=(",", ":"))

    @property
    def result_key(self) -> str:
        """The defense part of a result key: its id and a digest of its full spec."""
        return f"{self.id}:{hashlib.sha256(self.key().encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class TransferSpec:
    """Adversarials crafted on each source, judged on each target (models of the file, by id),
    for each of `attacks` (ids) at each of its eps values in `eps` (default: its positive grid)."""

    sources: tuple[str, ...]
    targets: tuple[str, ...]
    attacks: tuple[str, ...]
    eps: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Claim:
    """A published claim and the grid cell it is judged on (its verdict is computed, see
    `robustlab.report.verdicts`). Two forms:

    - a **value**: ``published`` (a fraction) with a ``tolerance`` (default 0.05);
    - a **comparison** (``than`` another model of the file): ``model`` is more robust than
      ``than`` (``direction`` "higher", default) or less ("lower"), by at least ``margin``;
      ``published`` is then optional (the paper's difference, shown); ``than_defense``
      (default: the claim's ``defense``) compares with another defense, e.g. a defended model
      against its own base (``than`` = ``model``, ``than_defense: none``).

    ``attack`` is an attack id or "worst-case"; ``source`` (a transfer cell) names the model
    the adversarials come from. ``model``, ``than`` and ``source`` name models without their
    seed suffix. ``paper_eps`` / ``paper_data``: the eps and data set the paper states the
    claim at, when not the cell's (the verdict is then inconclusive: measured elsewhere).
    ``deviations``: known differences from the paper's setting, printed beside the verdict."""

    model: str
    attack: str
    eps: float | None
    published: float | None
    metric: str = "robust_accuracy"
    defense: str = "none"
    source: str | None = None
    ref: str = ""
    tolerance: float = 0.05
    than: str | None = None
    direction: str = "higher"
    margin: float = 0.0
    paper_eps: float | None = None
    paper_data: str | None = None
    deviations: tuple[str, ...] = ()
    than_defense: str | None = None


def _fail(where: str, msg: str) -> None:
    raise ConfigError(f"{where}: {msg}")


def _known_keys(where: str, doc: dict[str, Any], known: set[str]) -> None:
    unknown = set(doc) - known
    if unknown:
        _fail(where, f"unknown keys {sorted(unknown)}; known: {sorted(known)}")


def _eps_list(where: str, value: Any) -> tuple[float, ...]:
    """A list of budgets, numbers or fractions as the field writes them ([0, 2/255, 8/255]), as floats."""
    if not isinstance(value, (list, tuple)):
        _fail(where, f"eps must be a list of numbers (or fractions such as 8/255), got {value!r}")
    if not value:
        _fail(where, "eps must list at least one budget, e.g. [0, 0.1] or [0, 8/255]")
    return tuple(parse_eps(e, f"{where}: eps[{i}]") for i, e in enumerate(value))


def _budget(where: str, key: str, value: Any) -> Any:
    """`value` as a float when `key` (a path's last part) is a budget written as a fraction ("8/255")."""
    name = key.split(".")[-1]
    is_budget = name == "eps" or name.startswith("eps_")
    return parse_eps(value, f"{where}: {key}") if is_budget and isinstance(value, str) else value


# ---------------------------------------------------------------- data
def _parse_data(doc: Any) -> tuple[DataSpec, ...]:
    items = doc if isinstance(doc, list) else [doc or {}]
    out = []
    for i, d in enumerate(items):
        out.append(DataSpec.from_dict(d, f"data[{i}]" if isinstance(doc, list) else "data"))
    keys = [d.key for d in out]
    if len(out) > 1:  # each key names a directory: checkpoints/<data id>/<model id>
        for i, key in enumerate(keys):
            plain_name(key, f"data[{i}] id (give each data set an id)")
    if len(set(keys)) != len(keys):
        _fail("data", f"data sets need distinct ids, got {keys}")
    return tuple(out)


# ---------------------------------------------------------------- sweeps
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
            _fail(where, f"sweep over unknown key {key!r}: model keys are {sorted(top)}")
        if parts[1] in ("backbone_args", "head_args") and len(parts) == 3:
            fn = (BACKBONES.get(model.get("backbone", "")) if parts[1] == "backbone_args"
                  else HEADS.get(model.get("head", "softmax")))
            known = _callable_params(fn)
            if known is not None and parts[2] not in known:
                _fail(where, f"sweep over unknown key {key!r}: {parts[1]} takes {sorted(known - {'self'})}")
        return
    if parts[0] == "train":
        parts = parts[1:]
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    if not parts or parts[0] not in fields:
        _fail(where, f"sweep over unknown key {key!r}: train keys are {sorted(fields)}")
    if parts[0] == "objective_args" and len(parts) == 2:
        known = _objective_params(model, train)
        if known is not None and parts[1] not in known:
            _fail(where, f"sweep over unknown key {key!r}: the objective takes {sorted(known)}")
    elif parts[0] == "adv" and len(parts) > 1:
        from robustlab.train.adversarial import AdvConfig

        known_adv = {f.name for f in dataclasses.fields(AdvConfig)}
        if parts[1] not in known_adv or (len(parts) > 2 and parts[1] != "args"):
            _fail(where, f"sweep over unknown key {key!r}: adv keys are {sorted(known_adv)}")
    elif len(parts) > 1:
        factory = fields[parts[0]].default_factory
        if factory is dataclasses.MISSING or not isinstance(factory(), dict):
            _fail(where, f"sweep over unknown key {key!r}: {parts[0]} has no sub-keys")


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
        _fail(where, "sweep must map keys to non-empty lists of values")
    for key in sweep:
        _check_sweep_key(where, str(key), model, train)
    out = []
    for point in itertools.product(*sweep.values()):
        values = tuple(_budget(where, str(k), v) for k, v in zip(sweep, point, strict=True))  # 8/255 -> float
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
        args["adv"] = {k: _budget(f"{where}.train.adv", k, v) for k, v in args["adv"].items()}
    if "milestones" in args:
        if not isinstance(args["milestones"], list):
            _fail(f"{where}.train", f"milestones must be a list of epochs, got {short_repr(args['milestones'])}")
        args["milestones"] = tuple(args["milestones"])
    try:
        return TrainConfig(**args)
    except TypeError as exc:
        _fail(f"{where}.train", str(exc))
    raise AssertionError  # unreachable


def _seeds(where: str, value: Any) -> tuple[int, ...]:
    """A `seeds:` list: distinct integers >= 0."""
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)):
        _fail(where, f"seeds must be a non-empty list of integers >= 0, got {short_repr(value)}")
    if len(set(value)) != len(value):
        _fail(where, f"seeds must be distinct, got {short_repr(value)}")
    return tuple(value)


def _parse_models(doc: Any, datasets: tuple[DataSpec, ...], limits: Limits,
                  seeds: tuple[int, ...] | None = None) -> tuple[ModelSpec, ...]:
    if not isinstance(doc, list) or not doc:
        raise ConfigError("an experiment needs at least one model (models: a list)")
    data_ids = [d.key for d in datasets]
    out: list[ModelSpec] = []
    for i, m in enumerate(doc):
        where = f"models[{i}]"
        if not isinstance(m, dict) or not isinstance(m.get("model"), dict):
            _fail(where, "needs a 'model' mapping (backbone, head, ...)")
        _known_keys(where, m, {"id", "model", "train", "sweep", "data", "seeds"})
        if not isinstance(m.get("train") or {}, dict):
            _fail(where, f"train must be a mapping of training options, got {short_repr(m['train'])}")
        seed_list = _seeds(f"{where}.seeds", m["seeds"]) if "seeds" in m else seeds
        base_id = plain_name(m.get("id") or f"{m['model'].get('backbone')}-{m['model'].get('head', 'softmax')}",
                             f"{where}: id")
        only = m.get("data")
        only = [only] if isinstance(only, str) else only
        if only is not None and (not isinstance(only, list) or not all(isinstance(k, str) for k in only)
                                 or set(only) - set(data_ids)):
            _fail(where, f"data must name data sets of the file ({data_ids}), got {short_repr(only)}")
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
                _fail(where, "give the training seed either as train.seed or as seeds:, not both")
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
        _fail("models", f"model ids must be unique, got {twice} more than once")
    return tuple(out)


# ---------------------------------------------------------------- attacks, defenses
def _parse_attacks(doc: Any, default_eps: tuple[float, ...], models: tuple[ModelSpec, ...]) -> tuple[GridAttack, ...]:
    if not isinstance(doc, list) or not doc:
        raise ConfigError("an experiment needs at least one attack (attacks: a list)")
    unnamed = Counter(a if isinstance(a, str) else str(a.get("name")) for a in doc
                      if isinstance(a, str) or (isinstance(a, dict) and "id" not in a))
    out = []
    for i, item in enumerate(doc):
        where = f"attacks[{i}]"
        a = _named_entry(where, item)
        params = {k: v for k, v in a.items() if k not in ("name", "id", "eps", "models", "defenses")}
        only = _model_ids(where, a.get("models"), models)
        on = a.get("defenses")
        if on is not None and (not isinstance(on, list) or not on):
            _fail(where, "defenses must be a non-empty list of defense ids ('none' = undefended)")
        spec = AttackSpec(str(a["name"]), params)
        aid = plain_name(a.get("id") or (a["name"] if unnamed[a["name"]] == 1 else f"{a['name']}-{i + 1}"),
                         f"{where}: id")
        eps = () if get_attack_class(spec.name).minimum_norm else (
            _eps_list(where, a["eps"]) if "eps" in a else default_eps)
        if "eps" in a and get_attack_class(spec.name).minimum_norm:
            _fail(where, f"{spec.name} is a minimum-norm attack: it takes no eps grid")
        for e in eps or (None,):  # every parameter and eps checked now, not after training
            try:
                spec.build(0.0 if e is None else e)
            except ConfigError as exc:
                _fail(where, str(exc))
        out.append(GridAttack(aid, spec, eps, only, None if on is None else tuple(map(str, on))))
    ids = [a.id for a in out]
    if len(set(ids)) != len(ids):
        _fail("attacks", f"attack ids must be unique, got {ids}")
    return tuple(out)


def _parse_defenses(doc: Any, models: tuple[ModelSpec, ...]) -> tuple[DefenseSpec, ...]:
    if doc is None:
        return ()
    if not isinstance(doc, list):
        raise ConfigError("defenses must be a list")
    from robustlab.experiment.defenses import check_defense

    out = []
    for i, item in enumerate(doc):
        where = f"defenses[{i}]"
        d = _named_entry(where, item)
        if str(d["name"]) == "none":
            continue
        only = _model_ids(where, d.get("models"), models)
        args = {k: v for k, v in d.items() if k not in ("name", "id", "models", "non_adaptive")}
        name = check_defense(where, str(d["name"]), args)
        non_adaptive = d.get("non_adaptive", False)
        if not isinstance(non_adaptive, bool):
            _fail(where, f"non_adaptive must be true or false, got {short_repr(non_adaptive)}")
        out.append(DefenseSpec(plain_name(d.get("id") or d["name"], f"{where}: id"), name, args, only, non_adaptive))
    ids = [d.id for d in out]
    if len(set(ids)) != len(ids) or "none" in ids:
        _fail("defenses", f"defense ids must be unique and not 'none', got {ids}")
    return tuple(out)


def _named_entry(where: str, item: Any) -> dict[str, Any]:
    """An attacks / defenses entry as a mapping with a name (a bare string is the name)."""
    entry = {"name": item} if isinstance(item, str) else item
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        name = entry.get("name") if isinstance(entry, dict) else entry
        _fail(where, f"needs a name (a string), got {short_repr(name)}")
    return entry


def _model_ids(where: str, value: Any, models: tuple[ModelSpec, ...]) -> tuple[str, ...] | None:
    """An entry's ``models:`` filter: None (every model), or ids / base ids of models of the file."""
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        _fail(where, f"models must be a non-empty list of model ids, got {value!r}")
    for name in value:
        _resolve(f"{where}.models", str(name), models, None)
    return tuple(map(str, value))


def _resolve(where: str, name: str, models: tuple[ModelSpec, ...], data: str | None) -> list[ModelSpec]:
    """The models `name` refers to: an expanded id, an id without its seed suffix (every seed), or
    a base id (every sweep point / data set / seed)."""
    hits = ([m for m in models if m.id == name] or [m for m in models if m.group == name]
            or [m for m in models if m.family == name])
    hits = [m for m in hits if data is None or m.data == data]
    if not hits:
        known = ", ".join(m.id for m in models)[:300]
        _fail(where, f"{short_repr(name)} is not a model of this file (models: {known})")
    return hits


def _parse_transfer(doc: Any, models, attacks) -> TransferSpec | None:
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise ConfigError("transfer must be a mapping {sources: [...], targets: [...]}")
    _known_keys("transfer", doc, {"sources", "targets", "attacks", "eps"})
    resolved = {}
    for part in ("sources", "targets"):
        names = doc.get(part)
        if not isinstance(names, list) or not names:
            _fail("transfer", f"{part} must be a non-empty list of model ids")
        resolved[part] = tuple(m.id for n in names for m in _resolve(f"transfer.{part}", str(n), models, None))
    by_id = {a.id: a for a in attacks}
    fixed = [a.id for a in attacks if not a.minimum_norm]
    names = doc.get("attacks", fixed)
    if not isinstance(names, list) or not names:
        _fail("transfer", "attacks must be a non-empty list of attack ids")
    for n in names:
        if not isinstance(n, str) or n not in by_id or by_id[n].minimum_norm:
            _fail("transfer", f"attack {short_repr(n)} is not a fixed-budget attack of the grid (choose from {fixed})")
    eps = None
    if "eps" in doc:
        eps = _eps_list("transfer", doc["eps"])
        for n in names:
            missing = [e for e in eps if e not in by_id[n].eps]
            if missing:
                _fail("transfer", f"eps {missing} not in the grid of attack {n!r} ({list(by_id[n].eps)}): "
                      "the diagonal is the white-box cell, so it must be in the grid")
    return TransferSpec(resolved["sources"], resolved["targets"], tuple(map(str, names)), eps)


def _parse_claims(doc: Any, spec: ExperimentSpec) -> tuple[Claim, ...]:
    if doc is None:
        return ()
    if not isinstance(doc, list):
        raise ConfigError("claims must be a list")
    out = []
    for i, c in enumerate(doc):
        where = f"claims[{i}]"
        if not isinstance(c, dict):
            _fail(where, "must be a mapping (model, attack, eps, published)")
        _known_keys(where, c, {"model", "attack", "eps", "published", "metric", "defense", "source", "ref", "data",
                               "tolerance", "than", "direction", "margin", "paper_eps", "paper_data", "deviations",
                               "than_defense"})
        for k in ("model", "attack", *(() if "than" in c else ("published",))):
            if k not in c:
                _fail(where, f"needs {k!r}")
        model, data = _claim_model(where, c["model"], spec, c.get("data"))
        metric = str(c.get("metric", "robust_accuracy"))
        if metric not in METRICS:
            _fail(where, f"unknown metric {metric!r}; choose one of {list(METRICS)}")
        eps = None if c.get("eps") is None else parse_eps(c["eps"], f"{where}: eps")
        attack = str(c["attack"])
        defense = str(c.get("defense", "none"))
        source = c.get("source")
        if source is not None:
            source = _claim_model(where, source, spec, data)[0]
        than = None if c.get("than") is None else _claim_model(where, c["than"], spec, data)[0]
        if than is not None and source is not None:
            _fail(where, "a comparison (than:) is made on white-box or worst-case cells, not on a transfer cell")
        than_defense = None if c.get("than_defense") is None else str(c["than_defense"])
        if than_defense is not None and than is None:
            _fail(where, "than_defense needs than: (the model compared with)")
        if than is not None and than == model and (than_defense or defense) == defense:
            _fail(where, f"a comparison of {model} with itself: give than_defense (e.g. none)")
        direction = str(c.get("direction", "higher"))
        if direction not in ("higher", "lower"):
            _fail(where, f"direction must be 'higher' or 'lower', got {direction!r}")
        numbers = {}
        for k, default in (("tolerance", 0.05), ("margin", 0.0)):
            v = c.get(k, default)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                _fail(where, f"{k} must be a number in [0, 1], got {v!r}")
            numbers[k] = float(v)
        published = c.get("published")
        if published is not None and (isinstance(published, bool) or not isinstance(published, (int, float))):
            _fail(where, f"published must be a number, got {published!r}")
        deviations = c.get("deviations", [])
        if not isinstance(deviations, list) or not all(isinstance(x, str) for x in deviations):
            _fail(where, "deviations must be a list of strings")
        claim = Claim(model, attack, eps, None if published is None else float(published), metric, defense, source,
                      str(c.get("ref", "")), numbers["tolerance"], than, direction, numbers["margin"],
                      None if c.get("paper_eps") is None else parse_eps(c["paper_eps"], f"{where}: paper_eps"),
                      None if c.get("paper_data") is None else str(c["paper_data"]), tuple(deviations),
                      than_defense)
        for who, guard in ((model, defense), (than, than_defense or defense)):
            if who is not None and not spec.has_cell(dataclasses.replace(claim, model=who, defense=guard)):
                _fail(where, f"no cell {who} / defense {guard} / {attack} / eps {eps}"
                      f"{f' / from {source}' if source else ''} in the grid")
        out.append(claim)
    return tuple(out)


def _claim_model(where: str, name: Any, spec: ExperimentSpec, data: str | None) -> tuple[str, str | None]:
    """(model id without seed suffix, its data set) of a claim's model, source or `than`."""
    hits = _resolve(where, str(name), spec.models, data)
    groups = {m.group for m in hits}
    if len(groups) != 1:
        _fail(where, f"{name!r} names {len(groups)} models ({sorted(groups)}): use the full id")
    return hits[0].group, hits[0].data


def _self_test(value: Any) -> int:
    """Samples of the binarization test: ``true`` / absent the default, ``false`` 0 (off),
    ``{samples: N}`` N >= 1."""
    if value is None or value is True:
        return SELFTEST_SAMPLES
    if value is False:
        return 0
    if not isinstance(value, dict):
        _fail("self_test", f"must be true, false or a mapping {{samples: N}}, got {short_repr(value)}")
    _known_keys("self_test", value, {"samples"})
    return check_int(value.get("samples", SELFTEST_SAMPLES), "self_test.samples", 1)


def _deviations(where: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        _fail(where, "deviations must be a list of strings")
    return tuple(value)


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    datasets: tuple[DataSpec, ...]
    models: tuple[ModelSpec, ...]
    attacks: tuple[GridAttack, ...]
    eps: tuple[float, ...]
    defenses: tuple[DefenseSpec, ...] = ()
    transfer: TransferSpec | None = None
    claims: tuple[Claim, ...] = ()
    batch_size: int = 256
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)
    plugins: tuple[str, ...] = ()
    deviations: tuple[str, ...] = ()
    self_test: int = SELFTEST_SAMPLES
    """Samples of the binarization self-test per (model, defense, eps > 0); 0: not run."""

    @property
    def data(self) -> DataSpec:
        """The data set of a one-data-set experiment."""
        if len(self.datasets) != 1:
            raise ConfigError("this experiment has several data sets; use .datasets")
        return self.datasets[0]

    def dataset(self, key: str | None) -> DataSpec:
        """The data set named `key` (None: the first, for a model built in code without one)."""
        return self.datasets[0] if key is None else next(d for d in self.datasets if d.key == key)

    def attack(self, attack_id: str) -> GridAttack:
        return next(a for a in self.attacks if a.id == attack_id)

    def model(self, model_id: str) -> ModelSpec:
        """The model `model_id`; an id without its seed suffix names its first seed."""
        return next(m for m in self.models if m.id == model_id or m.group == model_id)

    def replicas(self, group: str) -> list[ModelSpec]:
        """Every seed of the model `group` (an id without seed suffix), in seed order."""
        return [m for m in self.models if m.group == group]

    def defense(self, defense_id: str) -> DefenseSpec:
        return next(d for d in self.defenses if d.id == defense_id)

    def defenses_for(self, model: ModelSpec) -> tuple[DefenseSpec, ...]:
        return tuple(d for d in self.defenses if d.models is None
                     or bool({model.id, model.group, model.family} & set(d.models)))

    @property
    def eps_grid(self) -> tuple[float, ...]:
        """Every budget of the file, sorted: the default `eps:` and each attack's own grid (the
        probe's identification metrics take their reference eps from it)."""
        return tuple(sorted({*self.eps, *(e for a in self.attacks for e in a.eps)}))

    def transfer_eps(self, attack_id: str) -> tuple[float, ...]:
        if self.transfer is None:
            return ()
        grid = self.attack(attack_id).eps
        return self.transfer.eps if self.transfer.eps is not None else tuple(e for e in grid if e > 0)

    def has_cell(self, c: Claim) -> bool:
        """Whether the grid holds the cell claim `c` is about."""
        try:
            model = self.model(c.model)
        except StopIteration:
            return False
        if c.defense != "none" and c.defense not in {d.id for d in self.defenses_for(model)}:
            return False
        if c.metric == "clean_accuracy" and c.eps in (None, 0.0) and c.attack == WORST:
            return True
        if c.source is not None:
            t = self.transfer
            if t is None or c.defense != "none" or self.model(c.source).id not in t.sources \
                    or model.id not in t.targets:
                return False
            if self.model(c.source).data != model.data or c.attack not in t.attacks:
                return False
            return c.eps in self.transfer_eps(c.attack)
        if c.attack == WORST:
            return any(c.eps in a.eps for a in self.attacks if a.applies_to(model, c.defense))
        if c.attack not in {a.id for a in self.attacks}:
            return False
        a = self.attack(c.attack)
        if not a.applies_to(model, c.defense):
            return False
        return c.eps is None if a.minimum_norm else c.eps in a.eps

    @classmethod
    def from_dict(cls, doc: dict[str, Any], limits: Limits | None = None) -> ExperimentSpec:
        """The spec of an experiment document; any bad value, or a plan larger than `limits`
        (default `Limits()`), is one `ConfigError`."""
        limits = limits or Limits()
        if not isinstance(doc, dict):
            raise ConfigError("an experiment must be a mapping")
        plain_data("experiment", doc)
        _known_keys("experiment", doc, {"name", "data", "models", "attacks", "eps", "batch_size", "defenses",
                                        "transfer", "claims", "executor", "plugins", "seeds", "deviations",
                                        "self_test"})
        name = plain_name(doc.get("name", "experiment"), "name")
        plugins = doc.get("plugins") or []
        if not isinstance(plugins, list):
            raise ConfigError("plugins must be a list of module names")
        plugins = [check_module_name(p, f"plugins[{i}]") for i, p in enumerate(plugins)]
        load_entry_points()  # the installed plugins, then the file's: before any name is checked
        import_plugins(plugins)
        executor = ExecutorSpec.from_dict(doc.get("executor") or "local")
        datasets = _parse_data(doc.get("data"))
        eps = _eps_list("eps", doc.get("eps", [0.0]))
        seeds = _seeds("seeds", doc["seeds"]) if doc.get("seeds") is not None else None
        models = _parse_models(doc.get("models"), datasets, limits, seeds)
        attacks = _parse_attacks(doc.get("attacks", list(DEFAULT_ATTACKS)), eps, models)
        defenses = _parse_defenses(doc.get("defenses"), models)
        for a in attacks:
            unknown = set(a.defenses or ()) - {"none"} - {d.id for d in defenses}
            if unknown:
                _fail(f"attack {a.id}", f"defenses {sorted(unknown)} are not defenses of this file")
        batch_size = doc.get("batch_size", 256)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {short_repr(batch_size)}")
        spec = cls(
            name=name,
            datasets=datasets,
            models=models,
            attacks=attacks,
            eps=eps,
            defenses=defenses,
            transfer=_parse_transfer(doc.get("transfer"), models, attacks),
            batch_size=batch_size,
            executor=executor,
            plugins=tuple(plugins),
            deviations=_deviations("deviations", doc.get("deviations")),
            self_test=_self_test(doc.get("self_test")),
        )
        _check_size(spec, limits)
        return dataclasses.replace(spec, claims=_parse_claims(doc.get("claims"), spec))

    @classmethod
    def from_file(cls, path: str | Path, limits: Limits | None = None) -> ExperimentSpec:
        """The spec of the YAML or JSON file at `path`, read within `limits` (see `from_dict`)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"no experiment file at {path}")
        limits = limits or Limits()
        return cls.from_dict(read_document(path, limits), limits)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "data": [{"id": d.key, **d.to_dict()} for d in self.datasets],
            "models": [{"id": m.id.split("/", 1)[1] if len(self.datasets) > 1 else m.id, "model": m.model,
                        "train": m.train.to_dict(), "data": m.data} for m in self.models],  # from_dict reads it
            "attacks": [{k: v for k, v in {"id": a.id, "name": a.spec.name, **a.spec.params,
                                          "eps": list(a.eps) or None, "models": list(a.models) if a.models else None,
                                          "defenses": list(a.defenses) if a.defenses else None}.items()
                         if v is not None} for a in self.attacks],
            "eps": list(self.eps),
            "defenses": [{"id": d.id, "name": d.name, **d.args, "models": list(d.models) if d.models else None,
                          "non_adaptive": d.non_adaptive} for d in self.defenses],
            "transfer": None if self.transfer is None else {
                "sources": list(self.transfer.sources), "targets": list(self.transfer.targets),
                "attacks": list(self.transfer.attacks),
                **({} if self.transfer.eps is None else {"eps": list(self.transfer.eps)})},
            "claims": [dataclasses.asdict(c) for c in self.claims],
            "batch_size": self.batch_size,
            "executor": self.executor.to_dict(),
            "plugins": list(self.plugins),
            "deviations": list(self.deviations),
            "self_test": {"samples": self.self_test} if self.self_test else False,
        }


def _check_size(spec: ExperimentSpec, limits: Limits) -> None:
    """ConfigError when the plan trains or evaluates more than `limits` allow (counted, not built)."""
    from robustlab.experiment.plan import plan_size

    n = plan_size(spec)
    limits.check(f"the experiment trains {n['models']:,} models and builds {n['defenses']:,} defended models; "
                 "together", n["models"] + n["defenses"], "trainings", "--max-trainings")
    limits.check(f"the experiment has {n['cells']:,} evaluation cells and {n['transfer']:,} transfer cells; "
                 "together", n["cells"] + n["transfer"], "cells", "--max-cells")

