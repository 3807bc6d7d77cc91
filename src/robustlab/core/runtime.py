"""Device choice and seeding."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from robustlab.core.errors import ConfigError


def pick_device(name: str | None = None) -> torch.device:
    """Return the device called `name`, or CUDA when present and the CPU otherwise.

    `$ROBUSTLAB_DEVICE` overrides the automatic choice.
    """
    name = name or os.environ.get("ROBUSTLAB_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for, but CUDA is not available here")
    return device


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU `torch.Generator` seeded with `seed`."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
