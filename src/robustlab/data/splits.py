"""Deterministic, stratified train/test splits and subsamples of a label vector.

Every function takes labels as a 1-d integer tensor and returns int64 index tensors into it.
Randomness comes only from `numpy.random.default_rng(seed)`, so the same labels and seed
give the same indices on every machine.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from robustlab.core.errors import ConfigError


def _labels_numpy(labels: torch.Tensor) -> np.ndarray:
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1:
        raise ConfigError("labels must be a 1-d torch.Tensor of class indices")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ConfigError(f"labels must hold integer class indices, got dtype {labels.dtype}")
    return labels.detach().cpu().numpy().astype(np.int64, copy=False)


def _rng(seed: int, stream: int = 0) -> np.random.Generator:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng([int(seed), stream])


def _by_class(y: np.ndarray) -> list[np.ndarray]:
    """Indices of each class present in `y`, classes in increasing order."""
    order = np.argsort(y, kind="stable")
    classes, starts = np.unique(y[order], return_index=True)
    return np.split(order, starts[1:]) if len(classes) else []


def _as_tensor(idx: list[np.ndarray] | np.ndarray) -> torch.Tensor:
    arr = np.concatenate(idx) if isinstance(idx, list) and idx else np.asarray(idx, dtype=np.int64)
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.int64))


def stratified_split(
    labels: torch.Tensor, test_fraction: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split sample indices into (train_idx, test_idx), class by class.

    Each class with `c` samples puts `round(c * test_fraction)` of them (half rounded up)
    in the test part, but at least 1 and at most `c - 1` when `c >= 2`, so every such class
    appears in both parts; a class with one sample goes to train. `test_fraction` must lie
    in (0, 1). The two parts are disjoint, cover every index, and come in a seeded shuffled
    order (a prefix is a random, roughly class-balanced sample).
    """
    if not isinstance(test_fraction, int | float) or not 0.0 < float(test_fraction) < 1.0:
        raise ConfigError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    y = _labels_numpy(labels)
    rng = _rng(seed)
    train, test = [], []
    for idx in _by_class(y):
        c = len(idx)
        n_test = 0 if c < 2 else min(max(math.floor(c * test_fraction + 0.5), 1), c - 1)
        perm = rng.permutation(idx)
        test.append(perm[:n_test])
        train.append(perm[n_test:])
    train_idx = rng.permutation(np.concatenate(train)) if train else np.empty(0, np.int64)
    test_idx = rng.permutation(np.concatenate(test)) if test else np.empty(0, np.int64)
    return _as_tensor(train_idx), _as_tensor(test_idx)


def per_class_split(
    labels: torch.Tensor, train_per_class: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split into (train_idx, test_idx) with exactly `train_per_class` train samples per class.

    The rest of each class is test (ORL's protocol: 5 train / 5 test per subject). Every
    class must have more than `train_per_class` samples, else `ConfigError`. Seeded
    shuffled order, like `stratified_split`.
    """
    if isinstance(train_per_class, bool) or not isinstance(train_per_class, int) or train_per_class < 1:
        raise ConfigError(f"train_per_class must be a positive integer, got {train_per_class!r}")
    y = _labels_numpy(labels)
    rng = _rng(seed)
    train, test = [], []
    for idx in _by_class(y):
        if len(idx) <= train_per_class:
            raise ConfigError(
                f"class {int(y[idx[0]])} has only {len(idx)} samples; train_per_class="
                f"{train_per_class} would leave none for test"
            )
        perm = rng.permutation(idx)
        train.append(perm[:train_per_class])
        test.append(perm[train_per_class:])
    train_idx = rng.permutation(np.concatenate(train)) if train else np.empty(0, np.int64)
    test_idx = rng.permutation(np.concatenate(test)) if test else np.empty(0, np.int64)
    return _as_tensor(train_idx), _as_tensor(test_idx)


def take_per_class(labels: torch.Tensor, n_per_class: int, seed: int = 0) -> torch.Tensor:
    """Indices of up to `n_per_class` seeded-random samples of each class, in increasing order."""
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, int) or n_per_class < 1:
        raise ConfigError(f"the number per class must be a positive integer, got {n_per_class!r}")
    y = _labels_numpy(labels)
    rng = _rng(seed)
    picked = [rng.permutation(idx)[:n_per_class] for idx in _by_class(y)]
    return _as_tensor(np.sort(np.concatenate(picked)) if picked else np.empty(0, np.int64))


def stratified_sample(labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Indices of a seeded stratified sample of `min(n, len(labels))` samples, in increasing order.

    Class quotas are proportional to class sizes (largest-remainder rounding, ties to the
    lower class index), so class proportions are preserved to within one sample each.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"the sample size must be a non-negative integer, got {n!r}")
    y = _labels_numpy(labels)
    rng = _rng(seed)
    total = len(y)
    if n >= total:
        return torch.arange(total, dtype=torch.int64)
    groups = _by_class(y)
    sizes = np.array([len(g) for g in groups], dtype=np.int64)
    exact = sizes * n / total
    quota = np.floor(exact).astype(np.int64)
    short = n - int(quota.sum())
    if short:
        # Largest fractional part first; stable sort keeps ties in class order.
        quota[np.argsort(-(exact - quota), kind="stable")[:short]] += 1
    picked = [rng.permutation(g)[:q] for g, q in zip(groups, quota, strict=True)]
    return _as_tensor(np.sort(np.concatenate(picked)) if picked else np.empty(0, np.int64))
