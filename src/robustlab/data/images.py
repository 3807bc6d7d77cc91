"""Read and write single image files as (C, H, W) float32 tensors in [0, 1], through Pillow."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from robustlab.core.errors import ConfigError, DataError, InputError

#: File extensions the folder loaders treat as images (lower case, with the dot).
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".pbm", ".pnm", ".tif", ".tiff", ".webp"}
)

_GREY_MODES = {"1", "L", "LA", "La"}
_WIDE_GREY_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
_READ_ERRORS = (
    OSError,
    UnidentifiedImageError,
    ValueError,
    SyntaxError,
    EOFError,
    Image.DecompressionBombError,
)


def _to_array(img: Image.Image) -> np.ndarray:
    """Pixels of `img` as float32 (H, W, C) in [0, 1], C = 1 for grey and 3 for colour."""
    mode = img.mode
    if mode in _GREY_MODES:
        return np.asarray(img.convert("L"), dtype=np.float32)[..., None] / 255.0
    if mode in _WIDE_GREY_MODES:  # 16-bit grey (PNG, PGM, TIFF)
        arr = np.asarray(img, dtype=np.float32)
        return np.clip(arr / 65535.0, 0.0, 1.0)[..., None]
    if mode == "F":
        raise DataError(f"floating-point images (mode 'F') are not supported: {img.filename or ''}")
    rgb = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    if (
        mode in ("P", "PA")
        and np.array_equal(rgb[..., 0], rgb[..., 1])
        and np.array_equal(rgb[..., 0], rgb[..., 2])
    ):
        return rgb[..., :1]  # a grey palette (e.g. GIF) stays one channel
    return rgb


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """Read one image file into a (C, H, W) float32 tensor with values in [0, 1].

    Grey images give C = 1, colour images C = 3 (alpha is dropped; a palette image whose
    colours are all grey counts as grey). 8-bit values are divided by 255, 16-bit by 65535.
    The format is found from the content, not the extension. Raises `DataError` naming the
    file when it is missing, unreadable or corrupt.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            arr = _to_array(img)
    except DataError:
        raise
    except _READ_ERRORS as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def _format_of(path: Path, like: str | os.PathLike | None) -> str:
    Image.init()
    if like is not None:
        if Path(like).is_file():
            try:
                with Image.open(like) as ref:
                    if ref.format:
                        return ref.format
            except _READ_ERRORS as exc:
                raise DataError(f"cannot read the format of {like}: {exc}") from None
        fmt = str(like).upper()
        if fmt in Image.SAVE:
            return fmt
        raise ConfigError(f"like={str(like)!r} is neither an image file nor a format Pillow can write")
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise ConfigError(f"cannot tell the image format of {path}: give an extension such as .png or like=")
    return fmt


def write_image(image: torch.Tensor, path: str | os.PathLike, like: str | os.PathLike | None = None) -> Path:
    """Write a (C, H, W) or (H, W) image with values in [0, 1] to `path`; return the path.

    C must be 1 (grey) or 3 (colour); values are rounded to 8 bits. The format follows the
    extension (PNG, JPEG, GIF, BMP, PGM/PPM, TIFF, ...), or `like`: an existing image file whose
    format to copy (e.g. an extensionless Yale GIF) or a Pillow format name such as "GIF".
    JPEG is written at quality 95; every other format here is lossless for 8-bit images.
    """
    path = Path(path)
    if not isinstance(image, torch.Tensor) or not image.is_floating_point():
        raise InputError("image must be a floating-point torch.Tensor with values in [0, 1]")
    x = image.detach().cpu()
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() != 3 or x.shape[0] not in (1, 3):
        raise InputError(f"image must have shape (1|3, H, W) or (H, W), got {tuple(image.shape)}")
    if x.numel() and (not bool(torch.isfinite(x).all()) or float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise InputError("image values must be finite and lie in [0, 1]")
    fmt = _format_of(path, like)
    pixels = (x * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    img = Image.fromarray(np.ascontiguousarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels))
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"quality": 95} if fmt == "JPEG" else {}
    try:
        img.save(path, format=fmt, **options)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"cannot write image {path} as {fmt}: {exc}") from None
    return path
