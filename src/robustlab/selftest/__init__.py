"""Self-tests of an evaluation's attacks: evaluations of the attacks themselves.

They read the model contract and the attack registry and write nothing; the caller stores
their rows like any result. `binarization_test` (Zimmermann et al. 2022) plants an
adversarial example inside the eps ball of each sample and checks the attack finds it;
`indicators` (Pintor et al. 2022) reads an attack's own run for signs that it failed.
"""

from robustlab.selftest.binarization import (
    BinarizationConfig,
    BinarizationResult,
    BinarizationSummary,
    BinarizedModel,
    SampleOutcome,
    binarization_test,
)

__all__ = [
    "BinarizationConfig", "BinarizationResult", "BinarizationSummary", "BinarizedModel", "SampleOutcome",
    "binarization_test",
]
