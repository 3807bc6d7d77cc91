"""`load_zoo_model(name, weights)`: a RobustBench-zoo checkpoint (safetensors, converted once with
`robustlab convert` when it came as a .pt) as a robustlab model: the zoo's architecture, the
checkpoint's weights (strict), the input normalization inside, images in [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from robustlab.core.errors import CheckpointError, ConfigError
from robustlab.core.weights import read_safetensors
from robustlab.models.wrap import WrappedModel, load_state, wrap
from robustlab.models.zoo.registry import INPUT_SHAPE, zoo_arch

NORMALIZATION_KEYS = (("mu", "sigma"), ("mean", "std"))
"""Buffers by which zoo wrappers (e.g. Rice et al., Engstrom et al.) carry their input normalization."""


def _carried(state: dict[str, torch.Tensor], source: str | Path) -> tuple[list[float], list[float]] | None:
    """Pop a (mean, std) pair the checkpoint carries, as per-channel lists (None when it has none)."""
    for m, s in NORMALIZATION_KEYS:
        if m in state and s in state:
            mean, std = state.pop(m).flatten().tolist(), state.pop(s).flatten().tolist()
            if len(mean) != 3 or len(std) != 3:
                raise CheckpointError(f"{source}: {m!r} / {s!r} must hold 3 values (one per channel), "
                                      f"got {len(mean)} and {len(std)}")
            return mean, std
    return None


def _normalization(name: str, default: tuple | None, carried: tuple | None, mean: Sequence[float] | None,
                   std: Sequence[float] | None) -> tuple[list[float] | None, list[float] | None]:
    """Explicit mean / std first, then what the checkpoint carries, then the architecture's default;
    an explicit pair that contradicts the checkpoint's is refused."""
    if (mean is None) != (std is None):
        raise ConfigError("give both mean and std, or neither")
    if mean is not None and std is not None:
        given = [float(v) for v in mean], [float(v) for v in std]
        if carried is not None and not all(torch.allclose(torch.tensor(a), torch.tensor(b), atol=1e-4)
                                           for a, b in zip(given, carried, strict=True)):
            raise ConfigError(f"the checkpoint normalizes with mean {carried[0]} / std {carried[1]}, but "
                              f"mean {given[0]} / std {given[1]} were given for {name}")
        return given
    if carried is not None:
        return carried
    return (list(default[0]), list(default[1])) if default is not None else (None, None)


def load_zoo_model(
    name: str,
    weights: str | Path,
    *,
    num_classes: int = 10,
    input_shape: Sequence[int] = INPUT_SHAPE,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    device: str | torch.device | None = None,
) -> tuple[WrappedModel, str]:
    """The zoo architecture `name` (see `robustlab.models.zoo.registry`) with `weights` (a
    .safetensors file; a .pt / .pth is refused, naming `robustlab convert`) loaded strictly.

    A leading ``module.`` on every key is dropped; so are the keys the published definition
    never uses (``sub_block1.*`` of the TRADES WideResNet). Normalization: `mean` / `std` (per
    channel, on the [0, 1] scale) when given, else ``mu`` / ``sigma`` (or ``mean`` / ``std``)
    carried in the checkpoint, else the architecture's own (CIFAR mean / std for the DeepMind
    layouts, none for the others). Returns (model in eval mode, key ``<name>:<file digest>``).
    """
    arch = zoo_arch(name)
    if tuple(input_shape) != INPUT_SHAPE:
        raise ConfigError(f"zoo architecture {arch.name} takes 3x32x32 images (CIFAR-style), "
                          f"the data has {'x'.join(map(str, input_shape))}")
    state, digest = read_safetensors(weights)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not (arch.ignored and k.startswith(arch.ignored))}
    carried = _carried(state, weights)
    mean_, std_ = _normalization(arch.name, arch.normalization(num_classes), carried, mean, std)
    module = arch.build(num_classes)
    load_state(module, state, weights)
    model = wrap(module, num_classes=num_classes, input_shape=INPUT_SHAPE, mean=mean_, std=std_,
                 device=device or "cpu")
    model.config.source = f"zoo:{arch.name}"
    return model, f"{arch.name}:{digest}"
