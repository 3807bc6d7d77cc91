"""`DataSpec`: which data set, how it is cut, and how many test samples are attacked.

The one description of "the data" shared by experiments, checkpoints (their
``metadata.data`` section) and the CLI; `trained_on` reads it back from a checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from robustlab.core.errors import CheckpointError, ConfigError
from robustlab.core.validation import check_int
from robustlab.data.dataset import Dataset


@dataclass(frozen=True)
class DataSpec:
    """A data set by name with its loading options (see `robustlab.data.load_dataset`).

    ``n_eval``: attack a stratified subset of this many test images (None: all of them).
    ``id``: a label naming the data set in an experiment that holds several (model ids and
    claims); it changes no number, so it is left out of `to_dict` and every result key.
    """

    name: str = "digits"
    root: str | None = None
    resize: int | None = None
    seed: int = 0
    n_eval: int | None = None
    train_per_class: int | None = None
    id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"data: name must be a data set name, got {self.name!r}")
        if self.root is not None and not isinstance(self.root, str):
            object.__setattr__(self, "root", str(self.root))
        check_int(self.seed, "data: seed")
        if self.id is not None and (not isinstance(self.id, str) or not self.id or "/" in self.id):
            raise ConfigError(f"data: id must be a plain name (no '/'), got {self.id!r}")
        for name in ("resize", "n_eval", "train_per_class"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, check_int(value, f"data: {name}", 1))

    @classmethod
    def from_dict(cls, doc: Any, where: str = "data") -> DataSpec:
        """A spec from a mapping (unknown keys and bad values raise `ConfigError` naming `where`)."""
        if not isinstance(doc, dict):
            raise ConfigError(f"{where} must be a mapping (name, root, resize, seed, n_eval, train_per_class, id)")
        known = {f.name for f in fields(cls)}
        unknown = set(doc) - known
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        try:
            return cls(**doc)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}".replace(f"{where}: data: ", f"{where}: ")) from None

    @property
    def key(self) -> str:
        """The name this data set goes by in an experiment: its id, else its name."""
        return self.id or self.name

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "id"}

    def load(self) -> Dataset:
        from robustlab.data.registry import load_dataset

        return load_dataset(
            self.name, root=self.root, resize=self.resize, seed=self.seed, train_per_class=self.train_per_class
        )

    def override(self, name: str | None = None, root: str | None = None) -> DataSpec:
        """This spec with another data set (`name`, loaded with default options) and/or `root`.

        The same name keeps every option it was trained with; another name starts afresh,
        since resizing, seed and per-class counts belong to the training data set.
        """
        if name is not None and name != self.name:
            return DataSpec(name=name, root=str(root) if root is not None else None, n_eval=self.n_eval)
        return replace(self, root=str(root)) if root is not None else self


def trained_on(checkpoint_config: dict[str, Any], where: str = "checkpoint") -> DataSpec | None:
    """The data set a checkpoint was trained on, from its config.json document (None when the
    checkpoint does not say). A malformed ``metadata.data`` raises `CheckpointError`."""
    meta = checkpoint_config.get("metadata")
    if meta is None:
        return None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: config.json 'metadata' must be a mapping, got {type(meta).__name__}")
    data = meta.get("data")
    if data is None:
        return None
    if not isinstance(data, dict):
        raise CheckpointError(f"{where}: config.json 'metadata.data' must be a mapping, got {type(data).__name__}")
    try:
        return DataSpec.from_dict({k: v for k, v in data.items() if k in {f.name for f in fields(DataSpec)}})
    except ConfigError as exc:
        raise CheckpointError(f"{where}: config.json 'metadata.data' is invalid: {exc}") from None
