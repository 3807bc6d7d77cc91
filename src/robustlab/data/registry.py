"""`load_dataset` and `list_datasets`: every data set robustlab knows, by name."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from robustlab.core.errors import ConfigError
from robustlab.core.registry import Registry
from robustlab.data import cifar, faces, mnist
from robustlab.data.dataset import Dataset, LabelledImages
from robustlab.data.digits import load_digits_pool
from robustlab.data.folder import load_folder_pool
from robustlab.data.locate import describe, network_available
from robustlab.data.resize import parse_size, resize_images
from robustlab.data.splits import per_class_split, stratified_split, take_per_class

Root = str | os.PathLike | None


@dataclass(frozen=True)
class DatasetSource:
    """A named data set: `load(root, size, download)` gives either a `Dataset` with its official
    train / test split or a `LabelledImages` pool that `load_dataset` splits by seed;
    `locate(root, check_network)` says, without loading, whether its files are here
    (``(found, where or why not)``). `train_per_class`: the customary per-class protocol, if any.
    A plugin adds one with ``DATASETS.register(name, DatasetSource(...), aliases=...)``."""

    description: str
    load: Callable[[Root, tuple[int, int] | None, bool], Dataset | LabelledImages]
    locate: Callable[[Root, bool], tuple[bool, str]]
    train_per_class: int | None = None


DATASETS: Registry[DatasetSource] = Registry("dataset", also=("folder:<path>",))
"""Every named data set ("folder:<path>" is the one name outside it: the path is part of it)."""


def _missing(searched: list[Path], url: str | None, check_network: bool) -> str:
    shown = searched[:5] + ([Path(f"... ({len(searched) - 5} more)")] if len(searched) > 5 else [])
    text = f"not found in {describe(shown)}"
    if url is None:
        return text
    if check_network and network_available(url):
        return f"{text}; load_dataset will download it from {url}"
    return f"{text}; no network" if check_network else f"{text}; downloadable from {url}"


def _found(found: tuple[Path | None, list[Path]], url: str | None, check_network: bool) -> tuple[bool, str]:
    folder, searched = found
    return (True, str(folder)) if folder is not None else (False, _missing(searched, url, check_network))


def _locate_digits(root: Root, check_network: bool) -> tuple[bool, str]:
    path = resources.files("sklearn.datasets") / "data" / "digits.csv.gz"
    return (True, str(path)) if path.is_file() else (False, "scikit-learn's digits file is missing")


def _idx(name: str) -> DatasetSource:
    title = {"fashion-mnist": "Fashion-MNIST: 60,000 + 10,000 grey 28x28 images",
             "mnist": "MNIST: 60,000 + 10,000 grey 28x28 handwritten digits"}[name]
    return DatasetSource(
        f"{title}, 10 classes (official split)",
        lambda root, size, download: mnist.load_idx_dataset(name, root, download),
        lambda root, net: _found(mnist.find_idx_dir(name, root), mnist.IDX_SOURCES[name].base_url, net),
    )


def _faces(name: str, description: str, load: Callable[..., LabelledImages], per_class: int | None) -> DatasetSource:
    return DatasetSource(description, lambda root, size, download: load(root, size),
                         lambda root, net: _found(faces.find_faces_dir(name, root), None, net),
                         train_per_class=per_class)


DATASETS.register("digits", DatasetSource(
    "scikit-learn digits: 1,797 grey 8x8 images, 10 classes (embedded)",
    lambda root, size, download: load_digits_pool(), _locate_digits))
DATASETS.register("fashion-mnist", _idx("fashion-mnist"), aliases=("fmnist", "fashion_mnist"))
DATASETS.register("mnist", _idx("mnist"))
DATASETS.register("orl", _faces("orl", "ORL/AT&T faces: 400 grey 92x112 images of 40 subjects (5 train / 5 test each)",
                                faces.load_orl_pool, 5))
DATASETS.register("yale", _faces("yale", "Yale faces: 164 grey 320x243 images of 15 subjects",
                                 faces.load_yale_pool, None))
DATASETS.register("cifar10", DatasetSource(
    "CIFAR-10 (binary version): 50,000 + 10,000 colour 32x32 images, 10 classes (official split)",
    lambda root, size, download: cifar.load_cifar10(root, download),
    lambda root, net: _found(cifar.find_cifar10_dir(root), cifar.CIFAR10_URL, net)), aliases=("cifar-10",))


def _resolve(name: str, root: Root) -> tuple[str, Path | None]:
    """(canonical name, folder path for image-folder data sets)."""
    if not isinstance(name, str):
        raise ConfigError(f"dataset name must be a string, got {type(name).__name__}")
    key = name.strip()
    if key.lower().startswith("folder:") or key.lower() == "folder":
        path = key[len("folder:") :].strip() if ":" in key else ""
        if path and root is not None and Path(path).expanduser() != Path(root).expanduser():
            raise ConfigError(f"dataset {name!r} names a folder and root={str(root)!r} names another")
        if not path and root is None:
            raise ConfigError("the folder data set needs a path: name='folder:<path>' or root=<path>")
        return "folder", Path(path or root).expanduser()  # type: ignore[arg-type]
    return DATASETS.canonical(key), None


def _check_args(seed: int, test_fraction: float, train_per_class: int | None) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, int | float)
        or not 0 < test_fraction < 1
    ):
        raise ConfigError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    if train_per_class is not None and (
        isinstance(train_per_class, bool) or not isinstance(train_per_class, int) or train_per_class < 1
    ):
        raise ConfigError(f"train_per_class must be a positive integer or None, got {train_per_class!r}")


def _split(
    name: str, pool: LabelledImages, seed: int, test_fraction: float, train_per_class: int | None
) -> Dataset:
    if train_per_class is not None:
        train_idx, test_idx = per_class_split(pool.y, train_per_class, seed)
    else:
        train_idx, test_idx = stratified_split(pool.y, test_fraction, seed)
    return Dataset(
        name=name,
        x_train=pool.x[train_idx],
        y_train=pool.y[train_idx],
        x_test=pool.x[test_idx],
        y_test=pool.y[test_idx],
        classes=list(pool.classes),
        source=pool.source,
    )


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    resize: tuple[int, int] | int | None = None,
    seed: int = 0,
    test_fraction: float = 0.25,
    train_per_class: int | None = None,
    download: bool = True,
) -> Dataset:
    """Load a data set by name as a `Dataset` (images float32 NCHW in [0, 1], int64 labels).

    Names: "digits", "fashion-mnist" (alias "fmnist"), "mnist", "orl", "yale", "cifar10",
    and "folder:<path>" (or name="folder", root=<path>) for one sub-folder per class.
    `root`: a folder holding the data set's files (or a `<name>/` sub-folder of them),
    searched before `$ROBUSTLAB_DATA/<name>` and the system locations.
    `resize`: (H, W) or a side length; every image is resized (bilinear, antialiased).
    Splits: mnist, fashion-mnist and cifar10 keep their official train/test split
    (`test_fraction` is ignored; `train_per_class`, when given, keeps that many seeded
    training images per class). The others are split by `seed`: `train_per_class` images
    of each class for training and the rest for test when it is given (default 5 for ORL),
    else a stratified split with `test_fraction` (in (0, 1)) of each class for test.
    `download`: fetch missing mnist / fashion-mnist / cifar10 files when a network is there.
    Raises `ConfigError` for unknown names or bad arguments, `DataError` for missing or bad files.
    """
    key, folder = _resolve(name, root)
    _check_args(seed, test_fraction, train_per_class)
    size = parse_size(resize) if resize is not None else None
    if folder is not None:
        loaded: Dataset | LabelledImages = load_folder_pool(folder, size)
        per_class = train_per_class
    else:
        source = DATASETS.get(key)
        loaded = source.load(root, size, download)
        per_class = train_per_class if train_per_class is not None else source.train_per_class
    if isinstance(loaded, Dataset):
        ds = loaded
        if train_per_class is not None:
            keep = take_per_class(ds.y_train, train_per_class, seed)
            ds = dataclasses.replace(ds, x_train=ds.x_train[keep], y_train=ds.y_train[keep])
    else:
        ds = _split(f"folder:{folder}" if folder is not None else key, loaded, seed, test_fraction, per_class)
    if size is not None and ds.input_shape[1:] != size:
        ds = dataclasses.replace(
            ds, x_train=resize_images(ds.x_train, size), x_test=resize_images(ds.x_test, size)
        )
    return ds


@dataclass(frozen=True)
class DatasetStatus:
    """Whether a named data set is on this machine: `where` is the folder found, or why not."""

    name: str
    available: bool
    where: str
    description: str = ""


def list_datasets(
    root: str | os.PathLike | None = None, *, check_network: bool = True
) -> list[DatasetStatus]:
    """The status of every named data set, found by looking for its files (nothing is loaded).

    `root`: an extra data folder searched first (as in `load_dataset`). `check_network`:
    probe (2 s timeout) whether a missing downloadable data set could be fetched.
    """
    out = []
    for key, source in DATASETS.items():
        found, where = source.locate(root, check_network)
        out.append(DatasetStatus(key, found, where, source.description))
    return out
