"""Reusing a model checkpoint a previous run trained: only when it was trained from the same
specs (the same digest) and still loads cleanly."""

from __future__ import annotations

from pathlib import Path

import torch

from robustlab.core.errors import CheckpointError
from robustlab.store.checkpoints import load_checkpoint, read_checkpoint_config


def reusable_checkpoint(directory: Path, digest: str) -> bool:
    """A checkpoint at `directory` trained from the same specs (same digest) that loads cleanly."""
    if not (directory / "config.json").is_file():
        return False
    try:
        meta = read_checkpoint_config(directory)["metadata"]
        if meta.get("experiment_digest") != digest:
            return False
        load_checkpoint(directory, torch.device("cpu"))
    except (CheckpointError, KeyError, TypeError):
        return False  # unreadable or stale: train afresh and overwrite it
    return True
