"""Resizing image batches (bilinear with antialiasing), keeping values in [0, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robustlab.core.errors import ConfigError


def parse_size(size: tuple[int, int] | int) -> tuple[int, int]:
    """Normalize a size given as `n` (square) or `(H, W)` into `(H, W)` positive ints."""
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (
        not isinstance(size, tuple | list)
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise ConfigError(f"resize must be a positive int or a (height, width) pair of them, got {size!r}")
    return int(size[0]), int(size[1])


def resize_images(x: torch.Tensor, size: tuple[int, int] | int, chunk: int = 4096) -> torch.Tensor:
    """Resize a float NCHW batch to (H, W) = `size` (bilinear, antialiased), clamped to [0, 1].

    Works in chunks of `chunk` images to bound peak memory; returns `x` itself when it
    already has that size.
    """
    h, w = parse_size(size)
    if x.dim() != 4 or not x.is_floating_point():
        raise ConfigError(f"resize_images needs a float NCHW batch, got {x.dtype} {tuple(x.shape)}")
    if tuple(x.shape[2:]) == (h, w):
        return x
    out = torch.empty((x.shape[0], x.shape[1], h, w), dtype=x.dtype, device=x.device)
    for start in range(0, x.shape[0], chunk):
        part = x[start : start + chunk]
        out[start : start + chunk] = F.interpolate(
            part, size=(h, w), mode="bilinear", align_corners=False, antialias=True
        ).clamp_(0.0, 1.0)
    return out
