"""Where anonymize may read and write, and which files of an input folder are images.

Inputs are never written: the output (and report) folders must not be the input folder,
lie inside it, or contain it (the output mirrors the input's relative paths, so an input
folder inside the output folder could have its own files overwritten). Paths are compared
after resolving symbolic links.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from robustlab.core.errors import ConfigError, DataError
from robustlab.data.folder import natural_key
from robustlab.data.images import IMAGE_EXTENSIONS, read_image


def _related(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def check_paths(input_dir: Path, output_dir: Path, report_dir: Path, overwrite: bool = False) -> None:
    """Raise `ConfigError` unless the output and report folders are safe to write (see module doc)."""
    src = Path(input_dir).resolve()
    if not src.is_dir():
        raise DataError(f"input folder {input_dir} does not exist or is not a folder")
    for role, path in (("output", output_dir), ("report", report_dir)):
        dst = Path(path).resolve()
        if _related(dst, src):
            raise ConfigError(
                f"the {role} folder {path} overlaps the input folder {input_dir} (same folder, inside it, "
                "or containing it); choose a folder outside it so that no input can be overwritten"
            )
        if dst.exists() and not dst.is_dir():
            raise ConfigError(f"the {role} path {path} exists and is not a folder")
        if dst.is_dir() and any(dst.iterdir()) and not overwrite:
            raise ConfigError(f"the {role} folder {path} is not empty; pass --overwrite to write into it")
    if _related(Path(output_dir).resolve(), Path(report_dir).resolve()):
        raise ConfigError("the report folder must be outside the output folder (and vice versa)")


@dataclass
class InputImage:
    """One readable image of the input folder: its path, path relative to the folder, pixels
    (C, H, W) in [0, 1] and the name of its first-level sub-folder (None at the top level)."""

    path: Path
    relative: Path
    image: torch.Tensor
    folder: str | None


def scan_images(input_dir: Path) -> tuple[list[InputImage], list[Path]]:
    """(images, skipped files) of `input_dir`, recursively, in natural order; hidden entries ignored.

    A file is an image when Pillow reads it, whatever its extension (the Yale faces have
    none). A file that fails to read raises `DataError` naming it when its extension is an
    image extension (a corrupt image); other unreadable files are skipped and listed.
    """
    root = Path(input_dir)
    files = sorted(
        (
            p
            for p in root.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
        ),
        key=lambda p: tuple(natural_key(part) for part in p.relative_to(root).parts),
    )
    images, skipped = [], []
    for path in files:
        try:
            pixels = read_image(path)
        except DataError as exc:
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                raise DataError(f"{exc} (fix or remove the file; nothing was written)") from None
            skipped.append(path)
            continue
        rel = path.relative_to(root)
        images.append(InputImage(path, rel, pixels, rel.parts[0] if len(rel.parts) > 1 else None))
    if not images:
        raise DataError(f"{input_dir} holds no readable images")
    return images, skipped
