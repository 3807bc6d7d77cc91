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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustlab.core.errors import ConfigError
from robustlab.core.plugins import check_module_name, import_plugins, load_entry_points
from robustlab.core.validation import check_int
from robustlab.data.spec import DataSpec
from robustlab.evaluate.runner import DEFAULT_ATTACKS
from robustlab.evaluate.selftests import SELFTEST_SAMPLES
from robustlab.experiment.limits import Limits, plain_data, plain_name, read_document, short_repr
from robustlab.experiment.plan import plan_size
from robustlab.experiment.spec_claims import parse_claims
from robustlab.experiment.spec_grid import parse_attacks, parse_defenses, parse_transfer
from robustlab.experiment.spec_models import parse_data, parse_models, parse_seeds
from robustlab.experiment.spec_parsing import eps_list, fail, known_keys
from robustlab.experiment.spec_parts import WORST, Claim, DefenseSpec, ExecutorSpec, GridAttack, ModelSpec, TransferSpec


def _self_test(value: Any) -> int:
    """Samples of the binarization test: ``true`` / absent the default, ``false`` 0 (off),
    ``{samples: N}`` N >= 1."""
    if value is None or value is True:
        return SELFTEST_SAMPLES
    if value is False:
        return 0
    if not isinstance(value, dict):
        fail("self_test", f"must be true, false or a mapping {{samples: N}}, got {short_repr(value)}")
    known_keys("self_test", value, {"samples"})
    return check_int(value.get("samples", SELFTEST_SAMPLES), "self_test.samples", 1)


def _deviations(where: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        fail(where, "deviations must be a list of strings")
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
        known_keys("experiment", doc, {"name", "data", "models", "attacks", "eps", "batch_size", "defenses",
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
        datasets = parse_data(doc.get("data"))
        eps = eps_list("eps", doc.get("eps", [0.0]))
        seeds = parse_seeds("seeds", doc["seeds"]) if doc.get("seeds") is not None else None
        models = parse_models(doc.get("models"), datasets, limits, seeds)
        attacks = parse_attacks(doc.get("attacks", list(DEFAULT_ATTACKS)), eps, models)
        defenses = parse_defenses(doc.get("defenses"), models)
        for a in attacks:
            unknown = set(a.defenses or ()) - {"none"} - {d.id for d in defenses}
            if unknown:
                fail(f"attack {a.id}", f"defenses {sorted(unknown)} are not defenses of this file")
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
            transfer=parse_transfer(doc.get("transfer"), models, attacks),
            batch_size=batch_size,
            executor=executor,
            plugins=tuple(plugins),
            deviations=_deviations("deviations", doc.get("deviations")),
            self_test=_self_test(doc.get("self_test")),
        )
        _check_size(spec, limits)
        return dataclasses.replace(spec, claims=parse_claims(doc.get("claims"), spec))

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
            "models": [_model_entry(m, len(self.datasets) > 1) for m in self.models],  # from_dict reads it
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


def _model_entry(m: ModelSpec, several: bool) -> dict[str, Any]:
    """A model as an entry of `to_dict` (a checkpoint to evaluate as ``checkpoint:``)."""
    mid = m.id.split("/", 1)[1] if several else m.id
    if m.given is None:
        return {"id": mid, "model": m.model, "train": m.train.to_dict(), "data": m.data}
    if m.given.kind == "checkpoint":
        return {"id": mid, "checkpoint": m.given.path, "data": m.data}
    return {"id": mid, "given": m.given.to_dict(), "data": m.data}


def _check_size(spec: ExperimentSpec, limits: Limits) -> None:
    """ConfigError when the plan trains or evaluates more than `limits` allow (counted, not built)."""
    n = plan_size(spec)
    limits.check(f"the experiment trains {n['models']:,} models and builds {n['defenses']:,} defended models; "
                 "together", n["models"] + n["defenses"], "trainings", "--max-trainings")
    limits.check(f"the experiment has {n['cells']:,} evaluation cells and {n['transfer']:,} transfer cells; "
                 "together", n["cells"] + n["transfer"], "cells", "--max-cells")

