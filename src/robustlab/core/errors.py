"""The error types robustlab raises: one family, each with a message a user can act on."""

from __future__ import annotations


class RobustlabError(Exception):
    """Base of every error robustlab raises on purpose (the CLI prints it as one line)."""


class InputError(RobustlabError, ValueError):
    """Images, labels or arguments that break the contract (shape, range, NaN, dtype)."""


class ConfigError(RobustlabError, ValueError):
    """An unknown name or an invalid value in a model, attack or experiment config."""


class DataError(RobustlabError, OSError):
    """A data file that is missing, truncated, corrupt or fails its checksum."""


class CheckpointError(RobustlabError, OSError):
    """A checkpoint that is not robustlab's, is corrupt, or does not match its config."""
