"""Evaluation: attacks against models over an eps grid, metrics, worst case per sample."""

from robustlab.evaluate.identification import (
    IdentificationMetrics,
    identification_metrics,
    verification_pairs,
)
from robustlab.evaluate.masking import MaskingFlag, check_probe, check_rows, gradient_probe
from robustlab.evaluate.metrics import cell_metrics, per_sample_outcomes, worst_case
from robustlab.evaluate.runner import AttackSpec, evaluate_grid, run_attack
from robustlab.evaluate.summary import (
    WORST,
    distance_curves,
    masking_flags,
    record_identification,
    record_probe,
    reference_eps,
    summarize,
)
from robustlab.evaluate.transfer import TransferMatrix, transfer_matrix

__all__ = [
    "IdentificationMetrics",
    "identification_metrics",
    "verification_pairs",
    "WORST",
    "TransferMatrix",
    "distance_curves",
    "transfer_matrix",
    "MaskingFlag",
    "check_probe",
    "check_rows",
    "gradient_probe",
    "masking_flags",
    "record_identification",
    "record_probe",
    "reference_eps",
    "AttackSpec",
    "cell_metrics",
    "evaluate_grid",
    "per_sample_outcomes",
    "run_attack",
    "summarize",
    "worst_case",
]
