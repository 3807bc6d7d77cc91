"""Storage: the results database and the checkpoint store."""

from robustlab.store.checkpoints import (
    checkpoint_digest,
    checkpoint_name,
    load_checkpoint,
    read_checkpoint_config,
    save_checkpoint,
)
from robustlab.store.results import (
    SCHEMA_VERSION,
    ResultKey,
    ResultRow,
    ResultStore,
    StoreError,
    canonical,
    check_writable,
    inspect_store,
)

__all__ = [
    "SCHEMA_VERSION",
    "check_writable",
    "inspect_store",
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
