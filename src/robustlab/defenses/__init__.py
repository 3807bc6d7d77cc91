"""Defenses: wrappers that turn a model into a defended model under the same contract."""

from robustlab.defenses.registry import DEFENSES, build_defense

__all__ = ["DEFENSES", "build_defense"]
