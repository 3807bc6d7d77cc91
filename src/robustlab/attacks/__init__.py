"""Attacks: one small module each on one base; success judged by `model.predict`."""

from robustlab.attacks.base import Attack, FixedBudgetAttack, RunOutput, input_gradient, judge
from robustlab.attacks.criteria import (
    Criterion,
    Detected,
    Misclassified,
    TargetedMisclassified,
    TopKExcluded,
    make_criterion,
)
from robustlab.attacks.fgsm import FGSM
from robustlab.attacks.ka3 import KA3, KAnonymousRanks
from robustlab.attacks.pgd import PGD
from robustlab.attacks.registry import ATTACKS, attack_parameters, make_attack, register_attack

__all__ = [
    "ATTACKS",
    "FGSM",
    "KA3",
    "KAnonymousRanks",
    "PGD",
    "Attack",
    "Criterion",
    "Detected",
    "FixedBudgetAttack",
    "Misclassified",
    "RunOutput",
    "TargetedMisclassified",
    "TopKExcluded",
    "attack_parameters",
    "input_gradient",
    "judge",
    "make_attack",
    "make_criterion",
    "register_attack",
]
