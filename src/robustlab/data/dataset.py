"""`Dataset`: a labelled train/test pair of image tensors in [0, 1], NCHW."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from robustlab.core.errors import InputError
from robustlab.data.splits import stratified_sample


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Images and labels of one data set, already split into train and test.

    `x_train`, `x_test`: float32, shape (N, C, H, W), values in [0, 1] (no normalization).
    `y_train`, `y_test`: int64, shape (N,), values in [0, len(classes)).
    `classes`: class names, index = label. `source`: where the data was read from.
    The fields cannot be reassigned; use `dataclasses.replace` for a changed copy.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str] = field(default_factory=list)
    source: str = ""

    def __post_init__(self) -> None:
        k = len(self.classes)
        for part in ("train", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or x.dim() != 4:
                raise InputError(f"{self.name}: x_{part} must be a float32 NCHW tensor")
            if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise InputError(f"{self.name}: y_{part} must be an int64 vector of length {x.shape[0]}")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= k):
                raise InputError(f"{self.name}: y_{part} holds labels outside [0, {k})")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise InputError(
                f"{self.name}: train images {tuple(self.x_train.shape[1:])} and test images "
                f"{tuple(self.x_test.shape[1:])} differ in shape"
            )

    @property
    def num_classes(self) -> int:
        """Number of classes (labels lie in [0, num_classes))."""
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image, (C, H, W)."""
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    def subset(self, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> Dataset:
        """A smaller copy with at most `n_train` / `n_test` samples (None keeps a part whole).

        The samples are drawn per class in proportion to class sizes (seeded, deterministic)
        and keep their original relative order.
        """
        parts = {}
        for stream, (part, n) in enumerate((("train", n_train), ("test", n_test))):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if n is not None:
                idx = stratified_sample(y, n, seed=seed * 2 + stream)
                x, y = x[idx], y[idx]
            parts[f"x_{part}"], parts[f"y_{part}"] = x, y
        return dataclasses.replace(self, **parts)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes}, source={self.source!r})"
        )


@dataclass(frozen=True, eq=False)
class LabelledImages:
    """An unsplit pool of images (float32 NCHW in [0, 1]) and int64 labels, before splitting."""

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    source: str
