"""M-SVDD defense (Mygdalis et al. 2020, section 4): an SVDD layer per class replaces the
linear head; ReLU/clamp and an adversarial class make it reject unverified inputs."""

from robustlab.defenses.svdd.beta import BetaTuning, accuracy, tune_beta
from robustlab.defenses.svdd.build import MSVDDBuild, MSVDDConfig, ResponseCrossEntropy, build_msvdd
from robustlab.defenses.svdd.layer import SVDDLayer, rbf_kernel
from robustlab.defenses.svdd.model import MSVDDModel, build_msvdd_structure, straight_through_clamp
from robustlab.defenses.svdd.training import SVDDTrainConfig, fit_svdd

__all__ = [
    "BetaTuning",
    "MSVDDBuild",
    "MSVDDConfig",
    "MSVDDModel",
    "ResponseCrossEntropy",
    "SVDDLayer",
    "SVDDTrainConfig",
    "accuracy",
    "build_msvdd",
    "build_msvdd_structure",
    "fit_svdd",
    "rbf_kernel",
    "straight_through_clamp",
    "tune_beta",
]
