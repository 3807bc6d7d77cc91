"""`evaluate` as a one-model experiment: one given model (a checkpoint, zoo or factory weights,
or an object in memory) on one data set, the attacks over one eps grid, the self-tests; the
same planner, executor and driver (the one writer) as `run`, so its rows, labels, warnings
and report are `run`'s.

`one_model_spec` builds the spec; `Evaluation` / `evaluate_model` are the Python API (they
validate everything first and write nothing until `run`); `evaluation_result` reads back what
one model's evaluation gives (summary rows, masking flags, identification, self-tests, the
defense-fit warning and the comparison with a defended model's base).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustlab.core.contract import RobustModel
from robustlab.core.environment import check_threads
from robustlab.core.progress import resolve_progress
from robustlab.core.validation import check_int
from robustlab.data.spec import DataSpec
from robustlab.evaluate.defended import compare_with_base, defended_models
from robustlab.evaluate.run_dir import check_run_dir
from robustlab.evaluate.runner import AttackSpec, ProgressFn, check_model_data
from robustlab.evaluate.samples import EvalSet
from robustlab.evaluate.selftests import SELFTEST_SAMPLES, selftest_results
from robustlab.evaluate.summary import identification_results, masking_flags, summarize
from robustlab.experiment.executors import LocalExecutor
from robustlab.experiment.outcome import GridFailed, GridOutcome
from robustlab.experiment.runner import plan_cells, run_grid
from robustlab.experiment.spec import ExperimentSpec
from robustlab.experiment.spec_parts import ExecutorSpec, GivenModel, GridAttack, ModelSpec
from robustlab.store.results import ResultStore

__all__ = ["Evaluation", "EvaluationResult", "evaluate_model", "evaluation_result", "one_model_spec", "outcome_model"]


def one_model_spec(model_id: str, given: GivenModel, data: DataSpec, attacks: Sequence[AttackSpec],
                   eps_grid: Sequence[float], *, batch_size: int = 256, self_test: int = SELFTEST_SAMPLES,
                   executor: ExecutorSpec | None = None) -> ExperimentSpec:
    """The experiment `robustlab evaluate` runs: `given` (id `model_id`) on `data` with each of
    `attacks` over `eps_grid` (minimum-norm attacks once), `self_test` samples of binarization
    test per eps > 0. Attack ids follow the file's rule (the name, or ``<name>-<n>`` when a
    name comes twice). Nothing is checked here: `run_grid` plans (and so builds) every cell."""
    names = [a.name for a in attacks]
    grid = tuple(eps_grid)
    grid_attacks = tuple(
        GridAttack(a.name if names.count(a.name) == 1 else f"{a.name}-{i + 1}", a, () if a.minimum_norm else grid)
        for i, a in enumerate(attacks))
    return ExperimentSpec(name=model_id, datasets=(data,), models=(ModelSpec(model_id, {}, data=data.key,
                                                                           given=given),),
                          attacks=grid_attacks, eps=grid, batch_size=check_int(batch_size, "batch size", 1),
                          executor=executor or ExecutorSpec(), self_test=check_int(self_test, "self-test samples", 0))


@dataclass
class EvaluationResult:
    """What one model's evaluation gives back: summary rows (of this model on these samples),
    masking flags, identification metrics, binarization self-tests (one summary per eps), the
    defense-fit warning, and for a defended model whose base is in the run `compare_with_base`."""

    model: str
    run_dir: Path
    rows: list[dict[str, Any]]
    masking: list[dict[str, Any]]
    identification: dict[str, Any]
    warning: str | None = None
    base: list[dict[str, Any]] = field(default_factory=list)
    selftests: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    """The model's entry of the store's meta "models" (config, clean accuracy, training, ...)."""


def evaluation_result(run_dir: str | Path, key: str, samples: str) -> EvaluationResult:
    """Read back the evaluation of the model labelled `key` on the sample set `samples` (digest)."""
    with ResultStore(run_dir, readonly=True) as store:
        rows = summarize(store, models=[key], samples=samples)
        flags = masking_flags(store, models=[key], samples=samples)
        ident = identification_results(store, models=[key], samples=samples)
        models = store.get_meta("models", {}) or {}
        defended = [d for d in defended_models(models) if d["model"] == key]
        base = compare_with_base(summarize(store, samples=samples), defended)
        tests = selftest_results(store, [key], samples)
    info = models.get(key, {})
    selftests = next(iter(tests.values()), []) if len(tests) == 1 else [t for v in tests.values() for t in v]
    identification = next(iter(ident.values()), {}) if len(ident) == 1 else ident
    return EvaluationResult(key, Path(run_dir), rows, flags, identification, info.get("warning"), base, selftests,
                            info)


class Evaluation:
    """A validated evaluation of a model on `data` (the samples, chosen by the caller) with
    `attacks` over `eps_grid` into `run_dir`: construction checks every attack at every eps, the
    thread count and the run directory, and writes nothing. ``overwrite`` deletes the run
    directory's results when `run` first writes. ``self_test``: samples of the binarization test
    at each eps > 0 (0: not run). `run` goes through the experiment driver on the local executor
    (the model object is evaluated in this process), at ``threads`` torch threads."""

    def __init__(self, run_dir: str | Path, data: EvalSet, attacks: Sequence[AttackSpec], eps_grid: Sequence[float],
                 *, batch_size: int = 256, defense: str = "none", overwrite: bool = False, threads: int | None = None,
                 command: str | None = None, self_test: int = SELFTEST_SAMPLES) -> None:
        self.run_dir, self.data, self.defense = Path(run_dir), data, defense
        self.attacks, self.eps_grid = list(attacks), list(eps_grid)
        self.batch_size = check_int(batch_size, "batch size", 1)
        self.self_test = check_int(self_test, "self-test samples", 0)
        self.threads, self.command, self.overwrite = check_threads(threads), command, overwrite
        plan_cells(self._spec(GivenModel("object"), "model"))  # every attack at every eps, built
        check_run_dir(self.run_dir, overwrite=overwrite, allow=("checkpoints", "defenses"))

    def _spec(self, given: GivenModel, model_id: str) -> ExperimentSpec:
        return one_model_spec(model_id, given, DataSpec(name=self.data.name), self.attacks, self.eps_grid,
                              batch_size=self.batch_size, self_test=self.self_test)

    def check_model(self, model: RobustModel) -> None:
        """Raise `InputError` unless `model` can be evaluated on the samples (shape, classes, dtype)."""
        check_model_data(model, self.data)

    def run(self, model: RobustModel, model_id: str, *, info: dict[str, Any] | None = None,
            progress: ProgressFn | None = None) -> EvaluationResult:
        """Evaluate `model` under the store label `model_id` (`info`: shown in the report); raises
        `GridFailed` (after the other cells are stored) when a cell failed."""
        given = GivenModel("object", model=model, key=model_id, info=dict(info or {}), defense=self.defense)
        data = DataSpec(name=self.data.name)
        outcome = run_grid(self._spec(given, model_id), self.run_dir, progress=progress, executor=LocalExecutor(),
                           overwrite=self.overwrite, threads=self.threads, command=self.command,
                           samples={data.key: self.data}, index=False)
        if outcome.failures:
            raise GridFailed(outcome)
        return evaluation_result(self.run_dir, model_id, self.data.digest)


def evaluate_model(model: RobustModel, model_id: str, data: EvalSet, attacks: Sequence[AttackSpec],
                   eps_grid: Sequence[float], run_dir: str | Path, *, batch_size: int = 256, defense: str = "none",
                   overwrite: bool = False, info: dict[str, Any] | None = None,
                   progress: ProgressFn | bool | None = True, threads: int | None = None,
                   self_test: int = SELFTEST_SAMPLES) -> EvaluationResult:
    """Evaluate `model` on `data` into `run_dir` at `threads` torch threads (default
    `DEFAULT_THREADS`): validate everything, then write (see `Evaluation`). ``progress``: True
    draws the CLI's bar when stderr is a terminal (silent otherwise), False silences it, a
    callback ``progress(message, done, total)`` hears it (`robustlab.core.progress`)."""
    evaluation = Evaluation(run_dir, data, attacks, eps_grid, batch_size=batch_size, defense=defense,
                            overwrite=overwrite, threads=threads, self_test=self_test)
    evaluation.check_model(model)
    with resolve_progress(progress) as report:
        return evaluation.run(model, model_id, info=info, progress=report)


def outcome_model(outcome: GridOutcome) -> tuple[str, str]:
    """(store label, samples digest) of the one model of a one-model run."""
    ((model_id, key),) = outcome.keys.items()
    return key, outcome.samples[model_id]
