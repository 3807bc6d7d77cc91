"""Known checksums of the downloadable data files, and the checks against them.

The tables are plain module-level dicts (file name -> `Checksum`) so tests and users can
add or override entries, e.g. with `monkeypatch.setitem(MNIST_CHECKSUMS, name, Checksum(...))`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from robustlab.core.errors import DataError


@dataclass(frozen=True)
class Checksum:
    """What a data file must hash to; a file passes when any one given digest matches.

    `md5`: of the file as officially distributed (e.g. the `.gz`). `sha256` and `size`
    (bytes): of the decompressed payload, which survives recompression (Debian recompressed
    the Fashion-MNIST `.gz` files, so their md5 differs from the official one).
    """

    md5: str | None = None
    sha256: str | None = None
    size: int | None = None


FASHION_MNIST_CHECKSUMS: dict[str, Checksum] = {
    "train-images-idx3-ubyte.gz": Checksum(
        md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        sha256="c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        size=47040016,
    ),
    "train-labels-idx1-ubyte.gz": Checksum(
        md5="25c81989df183df01b3e8a0aad5dffbe",
        sha256="bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        size=60008,
    ),
    "t10k-images-idx3-ubyte.gz": Checksum(
        md5="bef4ecab320f06d8554ea6380940ec79",
        sha256="5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        size=7840016,
    ),
    "t10k-labels-idx1-ubyte.gz": Checksum(
        md5="bb300cfdad3c16e7a12a480ee83cd310",
        sha256="0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        size=10008,
    ),
}

# MNIST: only the md5 of the official .gz files is known here (no copy of the data was at
# hand to measure the decompressed sha256), so a recompressed MNIST copy fails the check;
# add its payload sha256 here to accept one.
MNIST_CHECKSUMS: dict[str, Checksum] = {
    "train-images-idx3-ubyte.gz": Checksum(md5="f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train-labels-idx1-ubyte.gz": Checksum(md5="d53e105ee54ea40749a09fcbcd1e9432"),
    "t10k-images-idx3-ubyte.gz": Checksum(md5="9fb629c4189551a2d022fa330f9573f3"),
    "t10k-labels-idx1-ubyte.gz": Checksum(md5="ec29112dd5afa0611ce80d1b7f02629c"),
}

# The official binary CIFAR-10 archive (cifar-10-binary.tar.gz).
CIFAR10_CHECKSUMS: dict[str, Checksum] = {
    "cifar-10-binary.tar.gz": Checksum(md5="c32a1d4ab5d03f1284b67883e8d87530"),
}


def md5_hex(data: bytes) -> str:
    """Hex md5 of `data`."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def file_md5(path: Path, block: int = 1 << 20) -> str:
    """Hex md5 of the file at `path`, read in blocks of `block` bytes."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def lookup(table: dict[str, Checksum], name: str, path: Path) -> Checksum:
    """The entry for `name`, or `DataError`: robustlab never uses data it cannot verify."""
    try:
        return table[name]
    except KeyError:
        raise DataError(f"no checksum is known for {path} (file name {name!r}); refusing to use it") from None


def mismatch(
    path: Path, expected: Checksum, md5: str | None = None, sha256: str | None = None, size: int | None = None
) -> DataError:
    """A `DataError` saying which digests of `path` were measured and which were expected."""
    found = []
    if expected.md5:
        found.append(f"md5 {md5 or '?'} (expected {expected.md5})")
    if expected.sha256:
        found.append(f"sha256 of the decompressed data {sha256 or '?'} (expected {expected.sha256})")
    if expected.size is not None and size is not None and size != expected.size:
        found.append(f"decompressed size {size} bytes (expected {expected.size})")
    return DataError(
        f"checksum mismatch for {path}: "
        + "; ".join(found)
        + ". The file is corrupt or not the official one; delete it to download it again."
    )
