"""Storage: the results database and the checkpoint store."""

from robustlab.store.checkpoints import (
    check_checkpoint_target,
    checkpoint_digest,
    checkpoint_dir,
    checkpoint_name,
    load_checkpoint,
    read_checkpoint_config,
    save_checkpoint,
    weights_file,
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
    "check_checkpoint_target",
    "checkpoint_dir",
    "weights_file",
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
