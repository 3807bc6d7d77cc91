"""Strict reader of IDX files (the MNIST family format), optionally gzip-compressed and verified.

Layout: 2 zero bytes, a type code (0x08 = uint8, ...), the number of dimensions, then one
big-endian uint32 per dimension, then the values in C order, big-endian.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np

from robustlab.core.errors import DataError
from robustlab.data.checksums import Checksum, md5_hex, mismatch

IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(data: bytes, name: str = "<bytes>", ndim: int | None = None) -> np.ndarray:
    """Decode an uncompressed IDX payload into a read-only array (no copy for uint8).

    `ndim`, when given, is the number of dimensions the file must have (1 for labels,
    3 for images). Raises `DataError` naming `name` on a bad magic number, an unknown type,
    a wrong number of dimensions, or a payload shorter or longer than the header says.
    """
    if len(data) < 4:
        raise DataError(f"{name}: not an IDX file (only {len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    code, dims = data[2], data[3]
    if data[0] != 0 or data[1] != 0 or code not in IDX_TYPES or dims == 0:
        raise DataError(f"{name}: wrong IDX magic number 0x{magic:08x}")
    if ndim is not None and dims != ndim:
        raise DataError(f"{name}: wrong IDX magic number 0x{magic:08x}: {dims} dimensions, expected {ndim}")
    header = 4 + 4 * dims
    if len(data) < header:
        raise DataError(f"{name}: truncated IDX header ({len(data)} bytes, expected {header})")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    dtype = IDX_TYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(data) - header
    if got != expected:
        what = "short" if got < expected else "too long"
        raise DataError(
            f"{name}: payload {what}: header says shape {shape} = {expected} bytes, file has {got}"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def _gunzip(raw: bytes, path: Path) -> bytes:
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{path}: truncated or corrupt gzip file ({exc})") from None


def read_verified(path: Path, checksum: Checksum) -> bytes:
    """Read `path` (gunzipped when it ends in .gz) and verify it; return the payload bytes.

    The file passes when its own md5 equals `checksum.md5`, or when the decompressed payload
    has `checksum.sha256` (and `checksum.size`, when given). Otherwise `DataError`.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    md5 = md5_hex(raw) if checksum.md5 else None
    payload = _gunzip(raw, path) if path.suffix == ".gz" else raw
    if checksum.md5 and md5 == checksum.md5:
        return payload
    sha = hashlib.sha256(payload).hexdigest() if checksum.sha256 else None
    if sha is not None and sha == checksum.sha256 and checksum.size in (None, len(payload)):
        return payload
    raise mismatch(path, checksum, md5=md5, sha256=sha, size=len(payload))


def read_idx(path: Path, checksum: Checksum, ndim: int | None = None) -> np.ndarray:
    """Read, verify and decode one IDX file (`.gz` or plain); see `read_verified`, `parse_idx`."""
    return parse_idx(read_verified(Path(path), checksum), name=str(path), ndim=ndim)
