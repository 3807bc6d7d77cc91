"""Storage: the results database and the checkpoint store."""

from robustlab.store.checkpoints import (
    checkpoint_digest,
    checkpoint_name,
    load_checkpoint,
    read_checkpoint_config,
    save_checkpoint,
)
from robustlab.store.results import ResultKey, ResultRow, ResultStore, StoreError, canonical

__all__ = [
    "checkpoint_digest",
    "ResultKey",
    "ResultRow",
    "ResultStore",
    "StoreError",
    "canonical",
    "checkpoint_name",
    "load_checkpoint",
    "read_checkpoint_config",
    "save_checkpoint",
]
