"""Evaluation: attacks against models over an eps grid, metrics, worst case per sample.

`evaluate_grid` runs the cells of one model into an open store; evaluating a model into a run
directory is a one-model experiment (`robustlab.experiment.Evaluation`, `evaluate_model`), so
that one driver writes every run directory. `check_run_dir` holds the run-directory rules. `DEFAULT_ATTACKS` is the
evaluation every entry point runs when none is named.
"""

from robustlab.core.stats import clopper_pearson, mcnemar, wilson
from robustlab.evaluate.identification import (
    IdentificationMetrics,
    identification_metrics,
    verification_pairs,
)
from robustlab.evaluate.masking import MaskingFlag, check_probe, check_rows, gradient_probe
from robustlab.evaluate.metrics import cell_metrics, per_sample_outcomes, worst_case
from robustlab.evaluate.run_dir import check_run_dir
from robustlab.evaluate.runner import (
    DEFAULT_ATTACKS,
    AttackSpec,
    Cell,
    check_model_data,
    eval_mode,
    evaluate_grid,
    plan_cells,
    run_attack,
    spec_label,
)
from robustlab.evaluate.samples import EvalSet, eval_set
from robustlab.evaluate.summary import (
    WORST,
    compare,
    distance_curves,
    identification_results,
    masking_flags,
    record_identification,
    record_probe,
    reference_eps,
    summarize,
    worst_outcomes,
)
from robustlab.evaluate.transfer import TransferMatrix, transfer_matrix

__all__ = [
    "DEFAULT_ATTACKS",
    "WORST",
    "AttackSpec",
    "Cell",
    "EvalSet",
    "IdentificationMetrics",
    "MaskingFlag",
    "TransferMatrix",
    "cell_metrics",
    "check_model_data",
    "check_probe",
    "check_rows",
    "check_run_dir",
    "clopper_pearson",
    "compare",
    "distance_curves",
    "eval_mode",
    "eval_set",
    "evaluate_grid",
    "gradient_probe",
    "identification_metrics",
    "identification_results",
    "masking_flags",
    "mcnemar",
    "per_sample_outcomes",
    "plan_cells",
    "record_identification",
    "record_probe",
    "reference_eps",
    "run_attack",
    "spec_label",
    "summarize",
    "transfer_matrix",
    "verification_pairs",
    "wilson",
    "worst_case",
    "worst_outcomes",
]
