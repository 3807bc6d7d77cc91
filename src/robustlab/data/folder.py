"""Image folders: one sub-folder per class, or any explicit list of labelled image files."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from robustlab.core.errors import DataError
from robustlab.data.dataset import LabelledImages
from robustlab.data.images import IMAGE_EXTENSIONS, read_image
from robustlab.data.resize import resize_images


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded numbers by value ("s2" < "s10")."""
    return tuple(int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text))


def is_image_file(path: Path) -> bool:
    """A visible regular file with one of `IMAGE_EXTENSIONS`."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def stack_images(files: Sequence[Path], resize: tuple[int, int] | int | None = None) -> torch.Tensor:
    """Read `files` into one (N, C, H, W) float32 batch in [0, 1].

    Without `resize`, all images must share one size (else `DataError` naming two files that
    differ); with it, each image is resized to (H, W). Grey images are repeated to 3 channels
    when any image is colour.
    """
    images = []
    for f in files:
        img = read_image(f)
        if resize is not None:
            img = resize_images(img.unsqueeze(0), resize)[0]
        elif images and img.shape[1:] != images[0].shape[1:]:
            h0, w0 = images[0].shape[1:]
            h, w = img.shape[1:]
            raise DataError(
                f"images differ in size: {files[0]} is {w0}x{h0} (WxH) but {f} is {w}x{h}; "
                "pass resize=(H, W) to load them together"
            )
        images.append(img)
    if not images:
        raise DataError("no images to load")
    if any(i.shape[0] == 3 for i in images):
        images = [i.expand(3, -1, -1) for i in images]
    return torch.stack(images).contiguous()


def scan_class_folders(
    root: Path, keep: Callable[[str], bool] = lambda name: True
) -> list[tuple[str, list[Path]]]:
    """[(class name, image files)] for each visible sub-folder of `root` that `keep` accepts,
    both in natural order. Raises `DataError` when `root` has none or a class folder is empty."""
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a folder")
    classes = []
    for sub in sorted(root.iterdir(), key=lambda p: natural_key(p.name)):
        if not sub.is_dir() or sub.name.startswith(".") or not keep(sub.name):
            continue
        files = sorted((f for f in sub.iterdir() if is_image_file(f)), key=lambda p: natural_key(p.name))
        if not files:
            raise DataError(f"class folder {sub} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        classes.append((sub.name, files))
    if not classes:
        raise DataError(f"{root} has no class sub-folders of images")
    return classes


def load_folder_pool(
    root: str | os.PathLike,
    resize: tuple[int, int] | int | None = None,
    keep: Callable[[str], bool] = lambda name: True,
) -> LabelledImages:
    """All images under `root/<class>/`, labelled by class folder (classes in natural order)."""
    root = Path(root).expanduser()
    classes = scan_class_folders(root, keep)
    files = [f for _, fs in classes for f in fs]
    labels = [k for k, (_, fs) in enumerate(classes) for _ in fs]
    x = stack_images(files, resize)
    return LabelledImages(x, torch.tensor(labels, dtype=torch.int64), [c for c, _ in classes], str(root))
