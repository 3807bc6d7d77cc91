"""`EvalSet`: the samples a model is evaluated on, with the identity that keys their results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from robustlab.core.digest import canonical, tensor_digest
from robustlab.core.errors import ConfigError, InputError
from robustlab.core.validation import check_images, check_int, check_labels
from robustlab.data.dataset import Dataset


@dataclass(frozen=True, eq=False)
class EvalSet:
    """Images ``x`` (float NCHW in [0, 1], CPU) and true labels ``y`` (int64) to evaluate on.

    ``name`` and ``version`` identify the data set (the version is a digest of its whole test
    split unless given); ``digest`` identifies these exact samples. Both enter every result key.
    """

    x: torch.Tensor
    y: torch.Tensor
    name: str = "tensors"
    version: str = ""
    subset: str = "test"
    info: dict[str, Any] = field(default_factory=dict)
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        check_images(self.x, name="evaluation images")
        if len(self.x) == 0:
            raise InputError("there are no samples to evaluate (n_eval must be >= 1)")
        check_labels(self.y, len(self.x), int(self.y.max()) + 1 if len(self.y) else 1, name="evaluation labels")
        object.__setattr__(self, "x", self.x.detach().cpu())
        object.__setattr__(self, "y", self.y.detach().cpu().long())
        object.__setattr__(self, "digest", tensor_digest(self.x, self.y))
        if not self.version:
            object.__setattr__(self, "version", self.digest)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def data_key(self) -> str:
        """Canonical JSON of the data set's identity (name and version)."""
        return canonical({"name": self.name, "version": self.version})

    def describe(self) -> dict[str, Any]:
        """What the report shows about these samples."""
        return {"name": self.name, "version": self.version, "samples": self.digest, "n_eval": len(self),
                "input_shape": list(self.x.shape[1:]), **self.info}


def eval_set(data: Dataset, n_eval: int | None = None, seed: int = 0) -> EvalSet:
    """The test samples attacked: all of `data`'s test split, or a stratified subset of `n_eval`
    (seeded; `n_eval` >= 1, larger than the split means all of it)."""
    if n_eval is not None:
        n_eval = check_int(n_eval, "n_eval", 1)
    if len(data.y_test) == 0:
        raise ConfigError(f"{data.name} has no test images to evaluate on")
    if n_eval is None or n_eval >= len(data.y_test):
        x, y = data.x_test, data.y_test
    else:
        sub = data.subset(n_test=n_eval, seed=seed)
        x, y = sub.x_test, sub.y_test
    info = {"source": data.source, "n_train": len(data.y_train), "n_test": len(data.y_test),
            "classes": list(data.classes)}
    return EvalSet(x, y, name=data.name, version=tensor_digest(data.x_test, data.y_test), info=info)
