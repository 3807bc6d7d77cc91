"""robustlab: train, attack, defend and honestly measure image classifiers."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["wrap"]


def __getattr__(name: str) -> Any:
    """`robustlab.wrap` (a plain nn.Module under the model contract), imported on first use so
    that `import robustlab` stays light."""
    if name == "wrap":
        from robustlab.models.wrap import wrap

        return wrap
    raise AttributeError(f"module 'robustlab' has no attribute {name!r}")
