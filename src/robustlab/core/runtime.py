"""Device choice and seeding."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

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


@contextmanager
def seeded(seed: int) -> Iterator[torch.Generator]:
    """Seed Python, NumPy and torch (CPU and CUDA) for the block, then give the caller's random
    states back: work inside is reproducible, and the caller's random streams are untouched.
    Yields a CPU `torch.Generator` seeded with `seed`."""
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield seed_everything(seed)
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU `torch.Generator` seeded with `seed`."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
