"""`convert_checkpoint(src, out)`: a PyTorch ``.pt`` / ``.pth`` checkpoint (a RobustBench zoo
download, a training script's save) into a ``.safetensors`` file, the only weights robustlab
loads. The one place robustlab calls `torch.load`, with ``weights_only=True``: its restricted
unpickler builds tensors and plain containers and refuses anything else, so a pickle carrying
code is never run. From what it reads, only tensors are kept:

- a plain state dict (every value a tensor), or the one under a wrapper key
  (``state_dict``, ``model``, ``model_state_dict``, ``net``; or ``key=`` for another one, e.g.
  ``last``); the wrapper's other entries (epoch, optimizer state, ...) are left behind;
- a leading ``module.`` (DataParallel) is stripped from every key (and any prefix in `strip`).

Anything else is refused with one line and nothing is written; the output is written atomically
and never replaces an existing file unless `overwrite`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from robustlab.core.errors import CheckpointError, ConfigError
from robustlab.core.files import publish
from robustlab.core.weights import file_sha256, sniff

WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:200] + "...") if len(text) > 200 else text


def _state_dict(obj: Any, key: str | None, src: Path) -> tuple[Mapping[Any, Any], str | None]:
    """The mapping of tensors inside what `torch.load` returned, and the wrapper key it sat under."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{src} holds a {type(obj).__name__}, not a state dict of tensors; nothing written")
    if key is not None:
        if not isinstance(obj.get(key), Mapping):
            raise ConfigError(f"{src} has no state dict under {key!r} (its keys: {_listing(obj)})")
        return obj[key], key
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, None
    for wrapper in WRAPPER_KEYS:
        if isinstance(obj.get(wrapper), Mapping):
            return obj[wrapper], wrapper
    raise CheckpointError(f"{src} holds no state dict of tensors (its keys: {_listing(obj)}); name the one to "
                          "keep with --key; nothing written")


def _listing(obj: Mapping[Any, Any], limit: int = 8) -> str:
    keys = [repr(k) for k in list(obj)[:limit]]
    return ", ".join(keys) + (", ..." if len(obj) > limit else "") if keys else "none"


def _tensors(state: Mapping[Any, Any], strip: Sequence[str], src: Path) -> dict[str, torch.Tensor]:
    """`state` with prefixes stripped, every value a tensor (contiguous, its own storage)."""
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{src}: the state dict holds entries that are not tensors "
                              f"({', '.join(map(repr, bad[:5]))}{', ...' if len(bad) > 5 else ''}); nothing written")
    if not state:
        raise CheckpointError(f"{src}: the state dict is empty; nothing written")
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        for prefix in strip:
            if prefix and name.startswith(prefix):
                name = name[len(prefix):]
        if name in out:
            raise CheckpointError(f"{src}: two tensors are called {name!r} once prefixes are stripped; nothing written")
        out[name] = tensor.detach().to("cpu").contiguous().clone()  # own storage: safetensors refuses shared ones
    return out


def convert_checkpoint(
    src: str | Path,
    out: str | Path,
    *,
    key: str | None = None,
    strip: Sequence[str] = ("module.",),
    overwrite: bool = False,
) -> dict[str, Any]:
    """Convert `src` (a torch.save file) into the safetensors file `out` (see the module docstring).
    Returns what was written: path, tensors, parameters (elements), wrapper key, keys stripped."""
    from safetensors.torch import save

    src, out = Path(src), Path(out)
    if not src.is_file():
        raise CheckpointError(f"no checkpoint file at {src}")
    if out.suffix.lower() != ".safetensors":
        raise ConfigError(f"--out must name a .safetensors file, got {out}")
    if out.is_dir() or (out.exists() and not overwrite):
        raise ConfigError(f"{out} already exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise ConfigError(f"no folder {out.parent} to write {out.name} into")
    if sniff(src) == "safetensors":
        raise ConfigError(f"{src} is already a safetensors file: load it as it is")
    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as exc:  # the restricted unpickler refused it, or the file is not torch.save's
        raise CheckpointError(f"{src} cannot be read as tensors only (torch.load weights_only=True refused it: "
                              f"{_first_line(exc)}); nothing written") from None
    state, wrapper = _state_dict(obj, key, src)
    tensors = _tensors(state, strip, src)
    stripped = sum(1 for k in state if any(p and str(k).startswith(p) for p in strip))
    digest = file_sha256(src)
    publish({out: save(tensors, metadata={"converted_from": src.name, "source_sha256": digest,
                                          "wrapper": wrapper or ""})})
    return {"out": str(out), "tensors": len(tensors), "parameters": sum(t.numel() for t in tensors.values()),
            "wrapper": wrapper, "stripped": stripped, "source_sha256": digest}
