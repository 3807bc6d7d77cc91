"""Experiments: a spec (data x models x attacks x eps), planned, resumed and run into a run directory."""

from robustlab.experiment.runner import TrainedModel, eval_split, load_data, obtain_model, run_experiment
from robustlab.experiment.spec import DataSpec, ExperimentSpec, ModelSpec

__all__ = [
    "DataSpec",
    "ExperimentSpec",
    "ModelSpec",
    "TrainedModel",
    "eval_split",
    "load_data",
    "obtain_model",
    "run_experiment",
]
