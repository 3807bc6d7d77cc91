"""Weight files without pickles: what a file is (`sniff`), whether its name says pickle
(`PICKLE_SUFFIXES`), its digest (`file_sha256`), and reading safetensors (`read_safetensors`).

The one place that decides whether a weights file may be read: the checkpoint store, `wrap`'s
`load_factory`, the zoo and the conversion command all ask it. Nothing here ever unpickles.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from robustlab.core.errors import CheckpointError

PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar"})
"""File suffixes of torch.save / pickle files: refused by name, before reading a byte."""


def sniff(path: str | Path) -> str:
    """"safetensors" (an 8-byte little-endian header length, then a JSON header that fits in the
    file), "pickle" (pickle protocol 2+ or torch.save's zip), or "unknown"; reads 9 bytes."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(9)
    if len(head) == 9:
        header_len = int.from_bytes(head[:8], "little")
        if 2 <= header_len <= size - 8 and head[8:9] == b"{":
            return "safetensors"
    if (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")) or head[:2] == b"PK":
        return "pickle"
    return "unknown"


def looks_like_pickle(path: str | Path) -> bool:
    """True when `path`'s suffix or its first bytes say pickle / torch.save."""
    return Path(path).suffix.lower() in PICKLE_SUFFIXES or sniff(path) == "pickle"


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file (hex), read in 1 MiB blocks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_safetensors(weights: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of a safetensors file and a short digest of the file (10 hex digits of its
    SHA-256). Pickles (.pt/.pth/... or pickle bytes) are refused without being read, naming the
    conversion command; `CheckpointError` for a missing or invalid file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(weights)
    if not path.is_file():
        raise CheckpointError(f"no weights file at {path}")
    if path.suffix.lower() in PICKLE_SUFFIXES or sniff(path) != "safetensors":
        raise CheckpointError(f"{path} is not a safetensors file; robustlab never loads pickles: convert it with "
                              f"`robustlab convert {path} --out {path.with_suffix('.safetensors').name}` "
                              "(tensors only, no code run)")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a valid safetensors file: {exc}") from None
    return state, file_sha256(path)[:10]
