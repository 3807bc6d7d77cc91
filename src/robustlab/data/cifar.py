"""CIFAR-10 from the official *binary* version (cifar-10-batches-bin); never unpickles anything.

Each batch file holds records of 1 label byte + 3072 pixel bytes (1024 red, 1024 green,
1024 blue, each 32x32 row-major); the official files hold 10,000 records each. No per-file
checksum is published, so the extracted files are checked by exact size; the archive is
checked by md5 when downloaded.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import torch

from robustlab.core.errors import DataError
from robustlab.data import checksums as _ck
from robustlab.data.checksums import file_md5
from robustlab.data.dataset import Dataset
from robustlab.data.download import download_file, safe_extract_tar
from robustlab.data.locate import candidate_dirs, describe, download_dir

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
ARCHIVE = "cifar-10-binary.tar.gz"
BATCH_DIR = "cifar-10-batches-bin"
RECORD_BYTES = 1 + 3 * 32 * 32
BATCH_RECORDS = 10_000
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def parse_cifar_records(
    data: bytes, name: str = "<bytes>", records: int | None = BATCH_RECORDS
) -> tuple[np.ndarray, np.ndarray]:
    """Decode binary CIFAR records into (images uint8 (N, 3, 32, 32), labels int64 (N,)).

    `records`: the exact record count the data must hold (None: any whole number of records).
    Raises `DataError` naming `name` on a wrong size or a label outside 0..9.
    """
    size = len(data)
    if (records is not None and size != records * RECORD_BYTES) or size % RECORD_BYTES:
        expected = f"{records * RECORD_BYTES}" if records is not None else f"a multiple of {RECORD_BYTES}"
        raise DataError(f"{name}: wrong file size {size} bytes, expected {expected}")
    table = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    labels = table[:, 0].astype(np.int64)
    if labels.size and int(labels.max()) >= len(CLASSES):
        raise DataError(f"{name}: label {int(labels.max())} outside 0..{len(CLASSES) - 1}")
    return table[:, 1:].reshape(-1, 3, 32, 32), labels


def _read_batch(path: Path, records: int | None) -> tuple[np.ndarray, np.ndarray]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    return parse_cifar_records(data, str(path), records)


def _class_names(folder: Path) -> list[str]:
    meta = folder / "batches.meta.txt"
    with contextlib.suppress(OSError, UnicodeDecodeError):
        names = [line.strip() for line in meta.read_text().splitlines() if line.strip()]
        if len(names) == len(CLASSES):
            return names
    return list(CLASSES)


def _images(x: np.ndarray) -> torch.Tensor:
    out = x.astype(np.float32)
    out /= 255.0
    return torch.from_numpy(out)


def load_cifar10_dir(folder: str | os.PathLike, records_per_batch: int | None = BATCH_RECORDS) -> Dataset:
    """Load a `cifar-10-batches-bin` folder: train = data_batch_1..5, test = test_batch.

    `records_per_batch`: records each file must hold (None accepts any whole number, for
    small test files). Images: (N, 3, 32, 32) float32 in [0, 1] (byte/255).
    """
    folder = Path(folder)
    train = [_read_batch(folder / f, records_per_batch) for f in TRAIN_FILES]
    x_test, y_test = _read_batch(folder / TEST_FILE, records_per_batch)
    return Dataset(
        name="cifar10",
        x_train=_images(np.concatenate([x for x, _ in train])),
        y_train=torch.from_numpy(np.concatenate([y for _, y in train])),
        x_test=_images(x_test),
        y_test=torch.from_numpy(y_test),
        classes=_class_names(folder),
        source=str(folder),
    )


def _complete(folder: Path) -> bool:
    return all((folder / f).is_file() for f in (*TRAIN_FILES, TEST_FILE))


def find_cifar10_dir(root: str | os.PathLike | None = None) -> tuple[Path | None, list[Path]]:
    """(first folder holding all six batch files or None, the folders searched).

    Each candidate of `candidate_dirs("cifar10", root)` is tried as is and with `cifar-10-batches-bin/`.
    """
    searched = [p for d in candidate_dirs("cifar10", root) for p in (d, d / BATCH_DIR)]
    for folder in searched:
        if _complete(folder):
            return folder, searched
    return None, searched


def _download(dest: Path) -> Path:
    archive = dest / ARCHIVE
    expected = _ck.lookup(_ck.CIFAR10_CHECKSUMS, ARCHIVE, archive)

    def verify(path: Path) -> None:
        md5 = file_md5(path)
        if md5 != expected.md5:
            raise _ck.mismatch(path, expected, md5=md5)

    if not archive.is_file():
        download_file(CIFAR10_URL, archive, verify=verify)
    else:
        verify(archive)
    safe_extract_tar(archive, dest, prefix=BATCH_DIR)
    if not _complete(dest / BATCH_DIR):
        raise DataError(f"{archive} did not contain the six batch files of {BATCH_DIR}/")
    return dest / BATCH_DIR


def load_cifar10(root: str | os.PathLike | None = None, download: bool = True) -> Dataset:
    """Find (or download, when `download` and a network is there) and load binary CIFAR-10."""
    folder, searched = find_cifar10_dir(root)
    if folder is None:
        if not download:
            raise DataError(f"cifar10 not found: looked in {describe(searched)} (download=False)")
        try:
            folder = _download(download_dir("cifar10", root))
        except DataError as exc:
            raise DataError(
                f"cifar10 not found in {describe(searched)}, "
                f"and the download from {CIFAR10_URL} failed: {exc}"
            ) from None
    return load_cifar10_dir(folder)
