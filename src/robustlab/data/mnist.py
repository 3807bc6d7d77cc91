"""MNIST and Fashion-MNIST from the four standard IDX `.gz` files, checksum-verified."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from robustlab.core.errors import DataError
from robustlab.data import checksums as _ck
from robustlab.data.checksums import Checksum
from robustlab.data.dataset import Dataset
from robustlab.data.download import download_file
from robustlab.data.idx import read_idx, read_verified
from robustlab.data.locate import candidate_dirs, describe, download_dir

#: The four files, in the order (train images, train labels, test images, test labels).
IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@dataclass(frozen=True)
class IdxSource:
    """One IDX data set: its download base URL (ending in '/'), checksum table and class names."""

    name: str
    base_url: str
    checksums: dict[str, Checksum]
    classes: tuple[str, ...]


IDX_SOURCES: dict[str, IdxSource] = {
    "mnist": IdxSource(
        "mnist",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",  # mirror of yann.lecun.com/exdb/mnist
        _ck.MNIST_CHECKSUMS,
        tuple(str(i) for i in range(10)),
    ),
    "fashion-mnist": IdxSource(
        "fashion-mnist",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        _ck.FASHION_MNIST_CHECKSUMS,
        (
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    ),
}


def _file_in(folder: Path, name: str) -> Path | None:
    """`folder/name`, or its uncompressed twin (name without .gz), when either exists."""
    for candidate in (folder / name, folder / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def find_idx_dir(name: str, root: str | os.PathLike | None = None) -> tuple[Path | None, list[Path]]:
    """(first candidate folder holding all four files or None, the folders searched)."""
    searched = candidate_dirs(name, root)
    for folder in searched:
        if all(_file_in(folder, f) for f in IDX_FILES):
            return folder, searched
    return None, searched


def _download(source: IdxSource, dest: Path, table: dict[str, Checksum]) -> None:
    for fname in IDX_FILES:
        if (dest / fname).is_file():
            continue
        expected = _ck.lookup(table, fname, dest / fname)
        download_file(source.base_url + fname, dest / fname, verify=lambda p, e=expected: read_verified(p, e))


def _images(arr: np.ndarray) -> torch.Tensor:
    out = arr.astype(np.float32)
    out /= 255.0
    return torch.from_numpy(out).unsqueeze(1)


def load_idx_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    download: bool = True,
    checksums: dict[str, Checksum] | None = None,
) -> Dataset:
    """Load "mnist" or "fashion-mnist" with its official train/test split.

    Looks in `root`, `root/<name>`, `$ROBUSTLAB_DATA/<name>`, `/usr/share/datasets/<name>`
    and `~/.cache/robustlab/<name>`; else downloads into `root` or `$ROBUSTLAB_DATA/<name>`
    or the cache when `download`. Every file is checked against `checksums` (default: the
    module table for `name`) before use. Images: (N, 1, 28, 28) float32 in [0, 1] (byte/255).
    """
    source = IDX_SOURCES[name]
    table = source.checksums if checksums is None else checksums
    folder, searched = find_idx_dir(name, root)
    if folder is None:
        if not download:
            raise DataError(f"{name} not found: looked in {describe(searched)} (download=False)")
        folder = download_dir(name, root)
        try:
            _download(source, folder, table)
        except DataError as exc:
            raise DataError(
                f"{name} not found in {describe(searched)}, and the download from {source.base_url} "
                f"failed: {exc}"
            ) from None
    arrays = []
    for fname in IDX_FILES:
        path = _file_in(folder, fname)
        assert path is not None
        arrays.append(read_idx(path, _ck.lookup(table, fname, path), ndim=3 if "images" in fname else 1))
    x_train, y_train, x_test, y_test = arrays
    for part, x, y in (("train", x_train, y_train), ("t10k", x_test, y_test)):
        if x.dtype != np.uint8 or y.dtype != np.uint8:
            raise DataError(f"{folder}: {part} files must hold unsigned bytes")
        if len(x) != len(y):
            raise DataError(f"{folder}: {part} has {len(x)} images but {len(y)} labels")
        if len(y) and int(y.max()) >= len(source.classes):
            raise DataError(f"{folder}: {part} labels reach {int(y.max())}, expected < {len(source.classes)}")
    return Dataset(
        name=name,
        x_train=_images(x_train),
        y_train=torch.from_numpy(y_train.astype(np.int64)),
        x_test=_images(x_test),
        y_test=torch.from_numpy(y_test.astype(np.int64)),
        classes=list(source.classes),
        source=str(folder),
    )
