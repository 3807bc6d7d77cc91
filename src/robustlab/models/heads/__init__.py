"""Heads: features -> scores and decisions. Importing this package registers every head."""

from robustlab.models.heads import softmax  # noqa: F401
from robustlab.models.heads.base import HEADS, Head

__all__ = ["HEADS", "Head"]
