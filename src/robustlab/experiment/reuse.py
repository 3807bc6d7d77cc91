"""Checkpoints a run did not train now: one a previous run trained (reused only when trained
from the same specs, the same digest, and it still loads cleanly), and one given to evaluate
(what the run records of it: config, training, clean accuracy, history, its defense)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from robustlab.core.errors import CheckpointError
from robustlab.defenses.base import defense_label
from robustlab.store.checkpoints import load_checkpoint, read_checkpoint_config
from robustlab.train.adversarial import recipe_label


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


def checkpoint_entry(doc: dict[str, Any], directory: Path) -> dict[str, Any]:
    """What the store's meta "models" holds of a given checkpoint (`doc`: its config.json):
    config, training recipe, clean accuracy and its test size, the training history where it
    was kept (the report's curves), and for a defended checkpoint its defense label, its base's
    checkpoint and clean accuracy and the warning `defend` recorded."""
    meta = doc.get("metadata") or {}
    entry: dict[str, Any] = {
        "config": doc["model"], "defense": doc.get("defense"), "checkpoint": str(directory.resolve()),
        "clean_accuracy": meta.get("clean_accuracy"), "train": meta.get("train"),
        "training": recipe_label(meta.get("train")), "n_test": meta.get("n_test"),
    }
    if meta.get("history"):
        entry["history"] = meta["history"]
    if doc.get("defense"):  # its base's clean accuracy and checkpoint, for the fit warning and the link
        entry.update(defense_label=defense_label(doc["defense"]), base_checkpoint=meta.get("source_checkpoint"),
                     base_clean_accuracy=meta.get("base_clean_accuracy"), warning=meta.get("warning"))
    return entry
