"""Checkpoints: safetensors weights + a JSON config. Never pickle, never `torch.load`.

A checkpoint is a directory holding its weights and ``config.json``::

    {"format": "robustlab-checkpoint", "version": 1, "model": {...ModelConfig...},
     "digest": "<hash of the model config>", "metadata": {...},
     "weights": {"file": "weights-<sha256[:16]>.safetensors", "sha256": "<sha256 of the file>"}}

The config names the weights file by its digest, so replacing a checkpoint is atomic (see
`save_checkpoint`). Checkpoints written before that hold ``model.safetensors`` and no
"weights" entry; they load as before.

A defended model (a defense wrapping a `Classifier`, see `robustlab.defenses.registry`)
adds a ``"defense": {"name": ..., "args": {...}}`` section: "model" still describes the
base classifier, the defense builder rebuilds the structure around it, and the one
safetensors file holds every weight of the defended model (the base's under ``base.``).
The digest then hashes the model and defense sections together.

Loading refuses anything else: pickle files (.pt, .pth, .pkl, .ckpt, or pickle bytes),
a config without our format marker, or weights that do not match the config's model. The
safetensors header records the config digest the weights were saved with, so a config
whose defense (or its arguments) differs from the weights' is refused even when the
tensor names happen to match (a squeeze transform over the same base, say).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from robustlab.core.contract import RobustModel
from robustlab.core.errors import CheckpointError, ConfigError
from robustlab.core.files import publish
from robustlab.core.weights import file_sha256, looks_like_pickle, sniff
from robustlab.models import Classifier, ModelConfig, build_model
from robustlab.store.temporaries import remove_stale, temporary_pid

FORMAT = "robustlab-checkpoint"
VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
_WEIGHTS_FILE = re.compile(r"weights-[0-9a-f]{16}\.safetensors")


def checkpoint_name(config: ModelConfig, extra: str = "") -> str:
    """The directory name of a checkpoint: backbone-head-<hash of the config>."""
    return f"{config.backbone}-{config.head}-{config.digest()}{extra}"


def checkpoint_digest(config: ModelConfig, defense: Mapping[str, Any] | None = None) -> str:
    """The config digest: the model config's own, or a hash of model + defense sections."""
    if defense is None:
        return config.digest()
    blob = json.dumps({"model": config.to_dict(), "defense": defense}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _base_and_defense(model: RobustModel) -> tuple[Classifier, dict[str, Any] | None]:
    if isinstance(model, Classifier):
        return model, None
    spec = getattr(model, "defense_spec", None)
    base = getattr(model, "base", None)
    if callable(spec) and isinstance(base, Classifier):
        return base, spec()
    raise CheckpointError(
        f"cannot save a {type(model).__name__}: a checkpoint holds a Classifier or a registered "
        "defense over one (with defense_spec() and .base)"
    )


def save_checkpoint(
    model: RobustModel,
    directory: str | Path,
    metadata: dict[str, Any] | None = None,
    *,
    overwrite: bool = True,
) -> Path:
    """Write `model` (a Classifier or a registered defense over one) to `directory` (created)
    as safetensors + config.json; return the directory.

    The pair is published atomically: the weights go to a new file named by their digest
    (``weights-<sha256>.safetensors``), then config.json, which names that file and its
    digest, replaces the old config in one rename; older weight files are removed last.
    A reader therefore sees the old checkpoint or the new one, never new weights under an
    old config, whenever the writer is killed. ``overwrite=False`` refuses to replace an
    existing checkpoint (`CheckpointError`); a non-checkpoint, non-empty directory or a
    file at `directory` is always refused. A failed save (a full disk: `OSError`, ENOSPC)
    leaves the folder as it was: no new weights, no folder it created; temporaries that a
    killed save left (``.weights-<pid>.tmp`` of a process that no longer runs) are removed.
    """
    base, defense = _base_and_defense(model)
    directory = Path(directory)
    check_checkpoint_target(directory, overwrite=overwrite)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    digest = checkpoint_digest(base.config, defense)
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "model": base.config.to_dict(),
        "digest": digest,
        "metadata": metadata or {},
    }
    if defense is not None:
        doc["defense"] = defense
    try:  # metadata that is not strict JSON fails here, before any write
        json.dumps(doc, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint metadata is not JSON-able: {exc}") from None
    created = _missing_parents(directory)
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale(directory)  # temporaries of saves a kill interrupted
    tmp = directory / f".weights-{os.getpid()}.tmp"
    weights: Path | None = None
    kept = published = False
    try:
        blob = save(state, metadata={"format": FORMAT, "digest": digest})
        sha = hashlib.sha256(blob).hexdigest()
        with tmp.open("wb") as fh:  # a full disk raises OSError (ENOSPC) here, named by the CLI
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        del blob
        weights = directory / f"weights-{sha[:16]}.safetensors"
        kept = weights.exists()  # the same weights saved before: the old config may name this file
        tmp.replace(weights)
        doc["weights"] = {"file": weights.name, "sha256": sha}
        publish({directory / CONFIG: json.dumps(doc, indent=2, sort_keys=True, allow_nan=False).encode()})
        published = True
    except OSError as exc:  # name the checkpoint (a write error carries no file name)
        if exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(directory)) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)
        if not published:  # nothing half-written: the folder is left as it was
            if weights is not None and not kept:
                weights.unlink(missing_ok=True)
            for folder in created:
                with contextlib.suppress(OSError):
                    folder.rmdir()
    for old in directory.iterdir():  # weights no config names any more
        if old.name != weights.name and (old.name == WEIGHTS or _WEIGHTS_FILE.fullmatch(old.name)):
            old.unlink(missing_ok=True)
    return directory


def _missing_parents(directory: Path) -> list[Path]:
    """The folders `directory.mkdir(parents=True)` would create, deepest first."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    return missing


def check_checkpoint_target(directory: str | Path, *, overwrite: bool = False) -> None:
    """Raise `CheckpointError` unless a checkpoint may be written at `directory`: absent, an
    empty directory, or (with ``overwrite``) an existing robustlab checkpoint. Writes nothing."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"{directory} is a file, not a checkpoint directory")
    if not directory.is_dir():
        parent = directory.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise CheckpointError(f"{parent} is a file, not a directory")
        if any(len(part.encode()) > 255 for part in directory.parts):
            raise CheckpointError(f"{directory}: a file name is too long for the file system")
        if not os.access(parent, os.W_OK):
            raise CheckpointError(f"{parent} is read-only: cannot write the checkpoint there")
        return
    entries = [p.name for p in directory.iterdir() if temporary_pid(p.name) is None]  # a killed save's temporary
    if not entries:
        return
    if CONFIG not in entries:
        raise CheckpointError(
            f"{directory} is not empty and is not a robustlab checkpoint: choose a new or empty directory"
        )
    if not overwrite:
        raise CheckpointError(f"{directory} already holds a checkpoint: pass --overwrite to replace it")
    if not os.access(directory, os.W_OK):
        raise CheckpointError(f"{directory} is read-only: cannot replace the checkpoint there")


def _resolve(path: Path) -> Path:
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    if path.is_file():
        if looks_like_pickle(path):
            raise CheckpointError(
                f"{path} looks like a pickle/torch.save file; robustlab never loads pickles. "
                "Convert the weights to a robustlab checkpoint (safetensors + config.json)."
            )
        if path.name in (WEIGHTS, CONFIG) or _WEIGHTS_FILE.fullmatch(path.name):
            return path.parent
        raise CheckpointError(f"{path} is not a robustlab checkpoint (expected a directory with {CONFIG})")
    return path


def checkpoint_dir(path: str | Path) -> Path:
    """The checkpoint directory `path` names (the directory itself, or its config.json or
    weights file); `CheckpointError` for anything else (a pickle, a missing path, another file)."""
    return _resolve(Path(path))


def read_checkpoint_config(path: str | Path) -> dict[str, Any]:
    """The parsed and checked config.json of a checkpoint directory."""
    directory = _resolve(Path(path))
    config_path = directory / CONFIG
    if not config_path.is_file():
        raise CheckpointError(f"{directory} has no {CONFIG}: not a robustlab checkpoint")
    try:
        doc = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config_path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise CheckpointError(f"{config_path} is not a checkpoint config (JSON nested too deep)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(f"{config_path} is not a robustlab checkpoint config (no format marker)")
    if doc.get("version") != VERSION:
        raise CheckpointError(f"{config_path}: unsupported checkpoint version {doc.get('version')!r}")
    if not isinstance(doc.get("model"), dict):
        raise CheckpointError(f"{config_path}: 'model' must be a mapping (the model config)")
    if doc.get("metadata") is not None and not isinstance(doc["metadata"], dict):
        raise CheckpointError(f"{config_path}: 'metadata' must be a mapping, got {type(doc['metadata']).__name__}")
    try:
        ModelConfig.from_dict(doc["model"])
    except (ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{config_path}: bad model config: {' '.join(str(exc).split())}") from None
    return doc


LEGACY_KEYED: dict[str, dict[str, Any]] = {"pcl": {"decision": "prototype"}}
"""Heads whose keyed defaults older checkpoints did not write, with what those checkpoints
meant: a PCL head decided by nearest prototype before its decision was keyed (issue 18)."""


def _legacy_config(doc: dict[str, Any], directory: Path) -> ModelConfig:
    """The config of a checkpoint written before its head's keyed defaults were written into
    configs: its digest is the hash of the model section as stored, and it gets the decision rule
    it was saved with (`LEGACY_KEYED`). Anything else whose digest differs is refused."""
    raw = doc["model"]
    legacy = LEGACY_KEYED.get(raw.get("head"))
    head_args = raw.get("head_args") or {}
    if legacy is not None and isinstance(head_args, dict) and not set(legacy) & set(head_args):
        defense = doc.get("defense")
        blob = raw if defense is None else {"model": raw, "defense": defense}
        stored = hashlib.sha256(json.dumps(blob, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]
        if stored == doc.get("digest"):
            return ModelConfig.from_dict({**raw, "head_args": {**legacy, **head_args}})
    raise CheckpointError(f"{directory / CONFIG}: the digest does not match the model config")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> RobustModel:
    """Load a checkpoint directory (or its config.json / model.safetensors) as a model in eval mode.

    A plain checkpoint gives a `Classifier`; one with a "defense" section gives the defended
    model (e.g. `MSVDDModel`) built by the defense registry.
    """
    directory = _resolve(Path(path))
    doc = read_checkpoint_config(directory)
    config = ModelConfig.from_dict(doc["model"])
    defense = doc.get("defense")
    if doc.get("digest") != checkpoint_digest(config, defense):
        config = _legacy_config(doc, directory)
    weights_path, sha = _weights_of(directory, doc)
    if not weights_path.is_file():
        raise CheckpointError(f"{directory} has no {weights_path.name} (named by its {CONFIG})")
    kind = sniff(weights_path)
    if kind == "pickle":
        raise CheckpointError(f"{weights_path} is a pickle, not safetensors; refusing to load it")
    if kind != "safetensors":
        raise CheckpointError(f"{weights_path} is not a valid safetensors file (bad header)")
    if sha is not None and file_sha256(weights_path) != sha:
        raise CheckpointError(f"{weights_path} does not match the digest its {CONFIG} records (modified or corrupt)")
    try:
        state = load_file(str(weights_path))
        with safe_open(str(weights_path), framework="pt") as fh:
            saved_digest = (fh.metadata() or {}).get("digest")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights_path} is not a valid safetensors file: {exc}") from None
    if saved_digest is not None and saved_digest != doc.get("digest"):
        raise CheckpointError(
            f"{weights_path} was saved with config {saved_digest}, but {directory / CONFIG} describes "
            f"{_describe(config, defense)} ({doc.get('digest')}): the config does not match the weights"
        )
    try:
        model: RobustModel = build_model(config)
    except (RuntimeError, MemoryError, ValueError) as exc:
        raise CheckpointError(f"{directory / CONFIG}: cannot build its model: {' '.join(str(exc).split())[:200]}") \
            from None
    if defense is not None:
        from robustlab.defenses import defense_structure  # the defenses import models, not the store

        try:
            model = defense_structure(defense, model)
        except ConfigError as exc:
            raise CheckpointError(f"{directory / CONFIG}: bad defense section: {exc}") from None
    _resize_empty_buffers(model, state)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}")
        if wrong:
            parts.append(f"wrong shapes {[(k, tuple(state[k].shape), tuple(expected[k].shape)) for k in wrong[:5]]}")
        raise CheckpointError(f"{weights_path} does not match its config ({_describe(config, defense)}): "
                              + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def _weights_of(directory: Path, doc: dict[str, Any]) -> tuple[Path, str | None]:
    """The weights file a config names and its sha256 (version-1 configs: model.safetensors, no digest)."""
    entry = doc.get("weights")
    if entry is None:
        return directory / WEIGHTS, None
    if not (isinstance(entry, dict) and isinstance(entry.get("file"), str) and isinstance(entry.get("sha256"), str)):
        raise CheckpointError(f"{directory / CONFIG}: 'weights' must name a file and its sha256")
    name = entry["file"]
    if not _WEIGHTS_FILE.fullmatch(name):
        raise CheckpointError(f"{directory / CONFIG}: bad weights file name {name!r}")
    return directory / name, entry["sha256"]


def weights_file(path: str | Path) -> Path:
    """The weights file of the checkpoint at `path` (the one its config.json names)."""
    directory = _resolve(Path(path))
    return _weights_of(directory, read_checkpoint_config(directory))[0]


def _describe(config: ModelConfig, defense: Mapping[str, Any] | None) -> str:
    name = f"{config.backbone}/{config.head}"
    return f"{name} + {defense.get('name')}" if defense else name


def _resize_empty_buffers(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Buffers created empty (a k-NN gallery before training) take the stored shape."""
    for name, buf in list(model.named_buffers()):
        if buf.numel() == 0 and name in state:
            module_name, _, attr = name.rpartition(".")
            module = model.get_submodule(module_name) if module_name else model
            module._buffers[attr] = torch.empty_like(state[name])
