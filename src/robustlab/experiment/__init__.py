"""Experiments: a spec (data x models x attacks x eps), planned into tasks, run by an executor
(in-process or on Ray) and recorded, resumably, into a run directory. Evaluating one given model
(`Evaluation`, `evaluate_model`, `robustlab evaluate`) is a one-model experiment."""

from robustlab.experiment.evaluation import Evaluation, EvaluationResult, evaluate_model
from robustlab.experiment.outcome import GridFailed, GridOutcome, TaskFailure
from robustlab.experiment.runner import load_data, plan_cells, run_experiment, run_grid
from robustlab.experiment.spec import ExperimentSpec
from robustlab.experiment.spec_parts import DataSpec, ExecutorSpec, ModelSpec
from robustlab.experiment.tasks import eval_split

__all__ = [
    "DataSpec",
    "ExecutorSpec",
    "Evaluation",
    "EvaluationResult",
    "ExperimentSpec",
    "GridFailed",
    "GridOutcome",
    "ModelSpec",
    "TaskFailure",
    "eval_split",
    "evaluate_model",
    "load_data",
    "plan_cells",
    "run_experiment",
    "run_grid",
]
