"""Checks on what users hand us: images in [0, 1] NCHW, integer labels of the right length."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from robustlab.core.errors import InputError


def check_images(x: torch.Tensor, input_shape: Sequence[int] | None = None, name: str = "x") -> None:
    """Raise `InputError` unless `x` is a floating NCHW batch with finite values in [0, 1].

    `input_shape` (C, H, W), when given, must match `x.shape[1:]`.
    """
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor in [0, 1], got dtype {x.dtype}")

    if x.dim() != 4:
        raise InputError(f"{name} must be a 4-d NCHW batch, got shape {tuple(x.shape)}")
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        raise InputError(
            f"{name} has per-image shape {tuple(x.shape[1:])}, the model expects {tuple(input_shape)}"
        )
    if x.numel() == 0:
        return
    if not bool(torch.isfinite(x).all()):
        raise InputError(f"{name} contains NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise InputError(f"{name} must lie in [0, 1], found values in [{lo:.4g}, {hi:.4g}]")


def check_model_input(model: torch.nn.Module, x: torch.Tensor, name: str = "x") -> None:
    """`check_images` against the model's `input_shape`, plus the model's dtype and device."""
    check_images(x, getattr(model, "input_shape", None), name)
    param = next(model.parameters(), None)
    if param is None:
        return
    if x.dtype != param.dtype:
        raise InputError(f"{name} is {x.dtype}, the model's weights are {param.dtype}: convert x to {param.dtype}")
    if x.device != param.device:
        raise InputError(f"{name} is on {x.device}, the model on {param.device}")


def check_labels(y: torch.Tensor, n: int, num_classes: int, name: str = "y") -> None:
    """Raise `InputError` unless `y` is an int64-compatible vector of `n` labels in [0, num_classes)."""
    if not isinstance(y, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(y).__name__}")
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise InputError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if y.dim() != 1 or y.shape[0] != n:
        raise InputError(f"{name} must have shape ({n},), got {tuple(y.shape)}")
    if n and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise InputError(
            f"{name} must lie in [0, {num_classes}), found [{int(y.min())}, {int(y.max())}]"
        )


def check_int(value: object, name: str, minimum: int | None = None) -> int:
    """`value` as an int: ints and integral floats (3.0) pass; bools, 2.7, strings and values
    below `minimum` raise `ConfigError` naming `name`."""
    from robustlab.core.errors import ConfigError

    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    out = int(value)
    if minimum is not None and out < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value!r}")
    return out


def check_number(value: object, name: str, minimum: float | None = None, strict: bool = False) -> float:
    """`value` as a finite float (bools, NaN, infinity, strings refused); `minimum` bounds it
    from below (exclusive when `strict`)."""
    from robustlab.core.errors import ConfigError

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and (out <= minimum if strict else out < minimum):
        raise ConfigError(f"{name} must be {'>' if strict else '>='} {minimum:g}, got {value!r}")
    return out
