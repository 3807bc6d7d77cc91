"""Adversarial training for every head: a recipe (`AdvConfig`), the methods, the wrapper that
turns any objective into its adversarial version, and the catastrophic-overfitting guard."""

from robustlab.train.adversarial.config import AdvConfig, recipe_label
from robustlab.train.adversarial.guard import OverfitGuard
from robustlab.train.adversarial.methods import METHODS, Method, get_method
from robustlab.train.adversarial.objective import AdversarialObjective, adversarial

__all__ = [
    "METHODS",
    "AdvConfig",
    "AdversarialObjective",
    "Method",
    "OverfitGuard",
    "adversarial",
    "get_method",
    "recipe_label",
]
