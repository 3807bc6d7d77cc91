"""Checkpoints: safetensors weights + a JSON config. Never pickle, never `torch.load`.

A checkpoint is a directory holding ``model.safetensors`` and ``config.json``::

    {"format": "robustlab-checkpoint", "version": 1, "model": {...ModelConfig...},
     "digest": "<hash of the model config>", "metadata": {...}}

Loading refuses anything else: pickle files (.pt, .pth, .pkl, .ckpt, or pickle bytes),
a config without our format marker, or weights that do not match the config's model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from robustlab.core.errors import CheckpointError
from robustlab.models import Classifier, ModelConfig, build_model

FORMAT = "robustlab-checkpoint"
VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
_PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar"}


def checkpoint_name(config: ModelConfig, extra: str = "") -> str:
    """The directory name of a checkpoint: backbone-head-<hash of the config>."""
    return f"{config.backbone}-{config.head}-{config.digest()}{extra}"


def save_checkpoint(model: Classifier, directory: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write `model` to `directory` (created) as safetensors + config.json; return the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS), metadata={"format": FORMAT})
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "model": model.config.to_dict(),
        "digest": model.config.digest(),
        "metadata": metadata or {},
    }
    tmp = directory / (CONFIG + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True))
    tmp.replace(directory / CONFIG)
    return directory


def _resolve(path: Path) -> Path:
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    if path.is_file():
        if path.suffix.lower() in _PICKLE_SUFFIXES or _looks_like_pickle(path):
            raise CheckpointError(
                f"{path} looks like a pickle/torch.save file; robustlab never loads pickles. "
                "Convert the weights to a robustlab checkpoint (safetensors + config.json)."
            )
        if path.name in (WEIGHTS, CONFIG):
            return path.parent
        raise CheckpointError(f"{path} is not a robustlab checkpoint (expected a directory with {CONFIG})")
    return path


def _looks_like_pickle(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(4)
    return head[:1] == b"\x80" or head[:2] == b"PK"  # pickle protocol >= 2, or torch's zip format


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
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(f"{config_path} is not a robustlab checkpoint config (no format marker)")
    if doc.get("version") != VERSION:
        raise CheckpointError(f"{config_path}: unsupported checkpoint version {doc.get('version')!r}")
    return doc


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Classifier:
    """Load a checkpoint directory (or its config.json / model.safetensors) as a model in eval mode."""
    directory = _resolve(Path(path))
    doc = read_checkpoint_config(directory)
    config = ModelConfig.from_dict(doc["model"])
    if doc.get("digest") != config.digest():
        raise CheckpointError(f"{directory / CONFIG}: the digest does not match the model config")
    weights_path = directory / WEIGHTS
    if not weights_path.is_file():
        raise CheckpointError(f"{directory} has no {WEIGHTS}")
    if _looks_like_pickle(weights_path):
        raise CheckpointError(f"{weights_path} is a pickle, not safetensors; refusing to load it")
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights_path} is not a valid safetensors file: {exc}") from None
    model = build_model(config)
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
        raise CheckpointError(f"{weights_path} does not match its config ({config.backbone}/{config.head}): "
                              + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def _resize_empty_buffers(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Buffers created empty (a k-NN gallery before training) take the stored shape."""
    for name, buf in list(model.named_buffers()):
        if buf.numel() == 0 and name in state:
            module_name, _, attr = name.rpartition(".")
            module = model.get_submodule(module_name) if module_name else model
            module._buffers[attr] = torch.empty_like(state[name])
