"""Evaluate one model into a run directory (the `evaluate` command; experiments, `run` and
`demo`, go through `robustlab.experiment`'s driver, which shares the keys, the run-directory
checks and `evaluate_cell` with this path).

`Evaluation(...)` validates everything first and writes nothing: every attack built at
every eps (parameters, budgets, a transfer source), the samples, the run directory (not a
file, not a foreign or older database, writable). `check_model` then checks a model
against the samples, and `run` records the model, its gradient probe, its identification
metrics and every grid cell not yet stored, and returns what the CLI prints.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from robustlab.core.contract import RobustModel
from robustlab.core.environment import check_threads, environment, pinned_threads
from robustlab.core.errors import ConfigError
from robustlab.core.validation import check_int
from robustlab.evaluate.defended import compare_with_base, defended_models, defense_fit_warning
from robustlab.evaluate.plan import GridPlan
from robustlab.evaluate.runner import (
    AttackSpec,
    ProgressFn,
    check_model_data,
    evaluate_grid,
    grid_cells,
    plan_cells,
)
from robustlab.evaluate.samples import EvalSet
from robustlab.evaluate.selftests import SELFTEST_SAMPLES, record_selftests
from robustlab.evaluate.summary import (
    identification_results,
    masking_flags,
    record_identification,
    record_probe,
    summarize,
)
from robustlab.store.results import ResultStore, StoreError, check_writable, inspect_store
from robustlab.store.temporaries import temporary_pid

_STORE_FILES = (ResultStore.FILENAME, ResultStore.FILENAME + "-wal", ResultStore.FILENAME + "-shm")


@dataclass
class EvaluationResult:
    """What one model's evaluation gives back: summary rows (of this model on these samples),
    masking flags, identification metrics, binarization self-tests (one summary per eps)."""

    model: str
    run_dir: Path
    rows: list[dict[str, Any]]
    masking: list[dict[str, Any]]
    identification: dict[str, Any]
    warning: str | None = None
    base: list[dict[str, Any]] = field(default_factory=list)
    """For a defended model whose base is in the run: `compare_with_base` (less robust, single
    attack above the base's ensemble)."""
    selftests: list[dict[str, Any]] = field(default_factory=list)
    """The binarization self-test's summary at each eps > 0 (`robustlab.evaluate.selftests`)."""


def check_run_dir(run_dir: str | Path, *, overwrite: bool = False, allow: Sequence[str] = ()) -> str:
    """Check that results may be written to `run_dir`, writing nothing; return "new", "resume"
    (it holds robustlab results to extend) or "replace" (``overwrite``: they will be deleted).

    Refused (`StoreError` / `ConfigError`): a path naming a file; a results file that is not a
    robustlab database or comes from an older robustlab (unless ``overwrite``); a non-empty
    directory without results (unless ``overwrite``; names in `allow` and robustlab's own
    temporary files, such as another process's database being created, do not count); a
    read-only location.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise StoreError(f"{run_dir} is a file, not a run directory")
    try:
        state = inspect_store(run_dir)
    except StoreError:
        if not overwrite:
            raise
        state = "replace"
    if state == "absent" and run_dir.is_dir():
        # another process's database being created (or one a kill left) is ours, not foreign
        others = sorted(p.name for p in run_dir.iterdir() if p.name not in allow and temporary_pid(p.name) is None)
        if others and not overwrite:
            raise ConfigError(
                f"{run_dir} is not empty and holds no robustlab results ({', '.join(others[:3])}"
                f"{', ...' if len(others) > 3 else ''}): choose a new or empty --out, or pass --overwrite"
            )
    if state == "robustlab" and overwrite:
        state = "replace"
    if state == "replace":
        for name in _STORE_FILES:
            if (run_dir / name).is_dir():
                raise StoreError(f"{run_dir / name} is a directory, not a results database")
        if not os.access(run_dir, os.W_OK):
            raise StoreError(f"{run_dir} is read-only: cannot write results there")
        return "replace"
    check_writable(run_dir)
    return "new" if state == "absent" else "resume"


def clear_store(run_dir: str | Path) -> None:
    """Delete the results database of `run_dir` (and its WAL files); nothing else."""
    for name in _STORE_FILES:
        path = Path(run_dir) / name
        if path.exists() or path.is_symlink():
            path.unlink()


class Evaluation:
    """A validated evaluation of models on `data` with `attacks` over `eps_grid` into `run_dir`.

    Construction validates and writes nothing. ``overwrite`` deletes the run directory's
    results (only when `run` first writes); without it, stored results are extended (every
    row is keyed by model, data, samples, attack and budget, so nothing is mixed). `run` pins
    torch to ``threads`` intra-op threads (default `DEFAULT_THREADS`, so numbers do not depend
    on the machine's core count) and records its environment and ``command`` (the CLI line
    that reproduces it) in the model's metadata and the store's "environment".
    ``self_test``: samples the binarization test runs on at each eps > 0 (0: not run).
    """

    def __init__(
        self,
        run_dir: str | Path,
        data: EvalSet,
        attacks: Sequence[AttackSpec],
        eps_grid: Sequence[float],
        *,
        batch_size: int = 256,
        defense: str = "none",
        overwrite: bool = False,
        allow: Sequence[str] = (),
        threads: int | None = None,
        command: str | None = None,
        self_test: int = SELFTEST_SAMPLES,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.threads = check_threads(threads)
        self.command = command
        self.self_test = check_int(self_test, "self-test samples", 0)
        self.data = data
        self.batch_size = check_int(batch_size, "batch size", 1)
        self.defense = defense
        self.eps_grid = list(eps_grid)
        self.cells = plan_cells(attacks, eps_grid)
        self.state = check_run_dir(self.run_dir, overwrite=overwrite, allow=allow)
        self._cleared = False

    def check_model(self, model: RobustModel) -> None:
        """Raise `InputError` unless `model` can be evaluated on the samples (shape, classes, dtype)."""
        check_model_data(model, self.data)

    def open_store(self) -> ResultStore:
        """The run directory's store, opened for writing (its old results deleted first under
        ``overwrite``, once)."""
        if self.state == "replace" and not self._cleared:
            clear_store(self.run_dir)
            self._cleared = True
        return ResultStore(self.run_dir)

    def run(
        self,
        model: RobustModel,
        model_id: str,
        *,
        info: dict[str, Any] | None = None,
        progress: ProgressFn | None = None,
        store: ResultStore | None = None,
        on_plan: Callable[[GridPlan], None] | None = None,
    ) -> EvaluationResult:
        """Evaluate `model` (id `model_id`; `info` goes to the run's model metadata); `on_plan`
        hears the grid's plan (cells, passes, time bound) before any attack runs."""
        self.check_model(model)
        info = dict(info or {})
        if info.get("defense_label") and "warning" not in info:  # the defense-fit warning, on every path
            info["warning"] = defense_fit_warning(info.get("clean_accuracy"), info.get("base_clean_accuracy"),
                                                  model.num_classes)
        device = next(model.parameters(), torch.empty(0)).device
        info["environment"] = environment(device, self.threads, self.data.describe())
        if self.command:
            info["command"] = self.command
        own = store is None
        store = store if store is not None else self.open_store()
        try:
            with pinned_threads(self.threads):
                return self._run(model, model_id, info, store, progress, on_plan)
        finally:
            if own:
                store.close()

    def _run(self, model: RobustModel, model_id: str, info: dict[str, Any], store: ResultStore,
             progress: ProgressFn | None, on_plan: Callable[[GridPlan], None] | None) -> EvaluationResult:
        """The evaluation proper, at the pinned thread count, into an open store."""
        store.update_meta("models", {model_id: info})
        store.set_meta("environment", info["environment"])
        sets = store.update_meta("evaluation_sets", {self.data.digest: self.data.describe()})
        if store.get_meta("data") is None or len(sets) == 1:
            store.set_meta("data", self.data.describe())
        record_probe(store, model_id, model, data=self.data, defense=self.defense)
        record_identification(store, model_id, model, data=self.data, eps_grid=self.eps_grid,
                              defense=self.defense, batch_size=self.batch_size)
        evaluate_grid(model, model_id, self.data.x, self.data.y, self.cells, self.eps_grid, store,
                      defense=self.defense, subset=self.data.subset, batch_size=self.batch_size,
                      progress=progress, data=self.data, on_plan=on_plan)
        selftests = []
        if self.self_test:
            if progress is not None:
                progress(f"{model_id} binarization self-test", 0, 1)
            cells = grid_cells(model, self.data, self.cells, self.eps_grid)
            selftests = record_selftests(store, model_id, model, self.data, cells, defense=self.defense,
                                         n=min(self.self_test, len(self.data)))
        rows = summarize(store, models=[model_id], samples=self.data.digest)
        flags = masking_flags(store, models=[model_id], samples=self.data.digest)
        ident = identification_results(store, models=[model_id], samples=self.data.digest)
        defended = [d for d in defended_models(store.get_meta("models", {}) or {}) if d["model"] == model_id]
        base = compare_with_base(summarize(store, samples=self.data.digest), defended)
        identification = next(iter(ident.values()), {}) if len(ident) == 1 else ident
        return EvaluationResult(model_id, self.run_dir, rows, flags, identification, info.get("warning"), base,
                                selftests)


def evaluate_model(
    model: RobustModel,
    model_id: str,
    data: EvalSet,
    attacks: Sequence[AttackSpec],
    eps_grid: Sequence[float],
    run_dir: str | Path,
    *,
    batch_size: int = 256,
    defense: str = "none",
    overwrite: bool = False,
    info: dict[str, Any] | None = None,
    progress: ProgressFn | None = None,
    threads: int | None = None,
    self_test: int = SELFTEST_SAMPLES,
) -> EvaluationResult:
    """Evaluate `model` on `data` into `run_dir` at `threads` torch threads (default
    `DEFAULT_THREADS`): validate everything, then write (see `Evaluation`)."""
    evaluation = Evaluation(run_dir, data, attacks, eps_grid, batch_size=batch_size, defense=defense,
                            overwrite=overwrite, threads=threads, self_test=self_test)
    evaluation.check_model(model)
    return evaluation.run(model, model_id, info=info, progress=progress)


__all__ = ["Evaluation", "EvaluationResult", "check_run_dir", "clear_store", "evaluate_model"]
