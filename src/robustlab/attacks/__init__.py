"""Attacks: one small module each on one base; success judged by `model.predict`."""

from robustlab.attacks.apgd import APGD, APGDT
from robustlab.attacks.autoattack import AutoAttack
from robustlab.attacks.base import Attack, FixedBudgetAttack, RunOutput, input_gradient, judge
from robustlab.attacks.bim import BIM
from robustlab.attacks.criteria import (
    Criterion,
    Detected,
    Misclassified,
    TargetedMisclassified,
    TopKExcluded,
    make_criterion,
)
from robustlab.attacks.cw import CarliniWagnerL2
from robustlab.attacks.deepfool import DeepFool
from robustlab.attacks.fab import FAB, FABT
from robustlab.attacks.fgsm import FGSM
from robustlab.attacks.hopskipjump import HopSkipJump
from robustlab.attacks.jsma import JSMA
from robustlab.attacks.ka3 import KA3, KAnonymousRanks
from robustlab.attacks.lbfgs import LBFGS
from robustlab.attacks.mim import MIM
from robustlab.attacks.pgd import PGD
from robustlab.attacks.registry import (
    ATTACKS,
    attack_parameters,
    get_attack_class,
    make_attack,
    register_attack,
)
from robustlab.attacks.rfgsm import RFGSM
from robustlab.attacks.square import Square
from robustlab.attacks.transfer import Transfer

__all__ = [
    "APGD",
    "APGDT",
    "ATTACKS",
    "BIM",
    "FGSM",
    "KA3",
    "KAnonymousRanks",
    "JSMA",
    "LBFGS",
    "MIM",
    "PGD",
    "RFGSM",
    "Attack",
    "AutoAttack",
    "CarliniWagnerL2",
    "Criterion",
    "DeepFool",
    "FAB",
    "FABT",
    "Detected",
    "FixedBudgetAttack",
    "HopSkipJump",
    "Misclassified",
    "RunOutput",
    "Square",
    "TargetedMisclassified",
    "TopKExcluded",
    "Transfer",
    "attack_parameters",
    "get_attack_class",
    "input_gradient",
    "judge",
    "make_attack",
    "make_criterion",
    "register_attack",
]
