"""Content digests: what a result depends on, hashed (model weights, evaluated samples, specs)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch


def canonical(spec: Any) -> str:
    """A canonical JSON string of `spec` (sorted keys, no spaces, non-finite floats refused)."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), allow_nan=False)


def tensor_digest(*tensors: torch.Tensor, length: int = 16) -> str:
    """Hex digest of the dtypes, shapes and bytes of `tensors` (CPU copies, contiguous)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().to("cpu").contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:length]


def model_digest(model: torch.nn.Module, length: int = 16) -> str:
    """Hex digest of a model's content: every parameter and buffer, by name, and for a defended
    model (one with ``defense_spec()``) its defense spec, since a transform with no fitted state
    (squeezing to 4 or 5 bits) differs only there. Equal content, equal digest."""
    h = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor_digest(value, length=64).encode())
    spec = getattr(model, "defense_spec", None)
    if callable(spec):
        h.update(b"defense")
        h.update(canonical(spec()).encode())
    return h.hexdigest()[:length]


def model_label(name: str, digest: str) -> str:
    """The one label of a model in the results store and the report: ``<name>:<weights digest>``
    (`name`: the user's id, else the checkpoint folder or factory name; `digest`: `model_digest`
    of its weights, first 10 hex digits). The same weights under the same name are one model,
    whichever command evaluated them. A defended model is named by its defense (`defense_label`,
    e.g. ``squeeze(bits:4)``) and its `model_digest` (base weights, defense spec, fitted
    buffers): one label whether `defend` + `evaluate` or `run`'s ``defenses:`` built it."""
    return f"{name}:{digest[:10]}"


def label_name(label: str) -> str:
    """The name part of a `model_label` (everything before the last colon: a defended model's
    name, e.g. ``squeeze(bits:4)``, has colons of its own); a label without one is its own name."""
    name, sep, _ = label.rpartition(":")
    return name if sep else label
