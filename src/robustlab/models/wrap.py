"""Bring your own model: `wrap` puts a plain `nn.Module` (logits out, trained elsewhere) under
robustlab's model contract, so every attack, `evaluate_grid`, the store and the report take it.

    model = robustlab.wrap(net, num_classes=10, input_shape=(3, 32, 32),
                           mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))

Inputs are images in [0, 1]; `mean` / `std` (per channel, on that scale) normalize them inside
the model, before `module`, so attacks work in pixel space. Leave them out when the module
normalizes itself (or expects [0, 1]). `predict` is the argmax of the logits; `embed` is the
output of the submodule named by `features` (default: the logits themselves).

A module that returns more than the logits: `output=` picks them, an index into a tuple
(``output=1`` for ``(features, logits)``) or a key of a dict (``output="logits"``). Without it
a tensor is taken as it is and a tuple's first element is taken (torch's convention: logits
first, auxiliary outputs after; the shape check then catches a wrong guess); a dict is
refused, naming its keys.

`load_factory("pkg.mod:factory", weights="net.safetensors", ...)` is the CLI's path to the
same: it imports the factory, builds the module, loads safetensors weights (never a pickle)
and wraps it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustlab.core.contract import RobustModel
from robustlab.core.errors import CheckpointError, ConfigError, InputError
from robustlab.core.weights import read_safetensors
from robustlab.models.classifier import Normalize


class WrappedModel(RobustModel):
    """A plain module under the contract: scores = module(normalize(x)), decision = argmax."""

    def __init__(
        self,
        module: nn.Module,
        num_classes: int,
        input_shape: Sequence[int],
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        features: str | None = None,
        source: str | None = None,
        output: int | str | None = None,
    ) -> None:
        if len(tuple(input_shape)) != 3:
            raise ConfigError(f"input_shape must be (C, H, W), got {tuple(input_shape)}")
        super().__init__(num_classes, tuple(input_shape))  # type: ignore[arg-type]
        if (mean is None) != (std is None):
            raise ConfigError("give both mean and std, or neither")
        channels = self.input_shape[0]
        if mean is not None and std is not None:
            mean, std = [float(v) for v in mean], [float(v) for v in std]
            if len(mean) != channels or len(std) != channels:
                raise ConfigError(f"mean and std need {channels} values (one per channel), got {len(mean)}, {len(std)}")
            if min(std) <= 0:
                raise ConfigError(f"std must be > 0, got {std}")
        self.normalizer: nn.Module = Normalize(mean, std) if mean is not None else nn.Identity()
        self.module = module
        self.features = features
        if isinstance(output, bool) or not isinstance(output, (int, str, type(None))):
            raise ConfigError(f"output must be an index (int) into the module's tuple or a key (str) of its dict, "
                              f"got {output!r}")
        self.output = output
        if features is not None and features not in dict(module.named_modules()):
            raise ConfigError(f"module has no submodule {features!r} for embed()")
        self.config = WrappedConfig(source or type(module).__name__, int(num_classes), self.input_shape,
                                    mean, std, features, output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self._logits(self.module(self.normalizer(x)))
        if scores.dim() != 2 or scores.shape[1] != self.num_classes:
            hint = "" if self.output is not None else "; if that is not the logits, pick them with wrap(..., output=)"
            raise InputError(f"the wrapped module returned scores of shape {tuple(scores.shape)}, expected "
                             f"(N, {self.num_classes}): it must output one logit per class{hint}")
        return scores

    def _logits(self, out: Any) -> torch.Tensor:
        """The logits among the module's outputs (see the module docstring: `output=`)."""
        selected, output = out, self.output
        if isinstance(output, int):
            if not isinstance(out, (tuple, list)) or not -len(out) <= output < len(out):
                got = f"a {type(out).__name__}" + (f" of {len(out)}" if isinstance(out, (tuple, list)) else "")
                raise InputError(f"wrap(output={output}) needs the module to return a tuple with that index, got {got}")
            selected = out[output]
        elif isinstance(output, str):
            if not isinstance(out, Mapping) or output not in out:
                keys = f"keys {', '.join(map(str, out))}" if isinstance(out, Mapping) else type(out).__name__
                raise InputError(f"wrap(output={output!r}) needs the module to return a dict with that key, got {keys}")
            selected = out[output]
        elif isinstance(out, Mapping):
            raise InputError(f"the wrapped module returns a dict (keys {', '.join(map(str, out))}); choose the logits: "
                             "wrap(..., output=KEY)")
        elif isinstance(out, (tuple, list)) and out:
            selected = out[0]
        if not isinstance(selected, torch.Tensor):
            raise InputError(f"the wrapped module's output is a {type(selected).__name__}, not a tensor of logits"
                             + ("" if output is not None else "; choose them with wrap(..., output=)"))
        return selected

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The `features` submodule's output, flattened (N, D); the logits when `features` is None."""
        if self.features is None:
            return self(x)
        captured: list[torch.Tensor] = []
        hook = self.module.get_submodule(self.features).register_forward_hook(
            lambda _m, _i, out: captured.append(out))
        try:
            self.module(self.normalizer(x))
        finally:
            hook.remove()
        return captured[0].flatten(1)


class WrappedConfig:
    """What a wrapped model is, for the store and the report (`to_dict`)."""

    def __init__(self, source: str, num_classes: int, input_shape: tuple[int, ...],
                 mean: list[float] | None, std: list[float] | None, features: str | None,
                 output: int | str | None = None) -> None:
        self.source, self.num_classes, self.input_shape = source, num_classes, input_shape
        self.mean, self.std, self.features, self.output = mean, std, features, output

    def to_dict(self) -> dict[str, Any]:
        out = {"backbone": self.source, "head": "external (argmax)", "module": self.source,
               "num_classes": self.num_classes, "input_shape": list(self.input_shape),
               "normalize": None if self.mean is None else {"mean": self.mean, "std": self.std},
               "features": self.features}
        return out if self.output is None else {**out, "output": self.output}


def wrap(
    module: nn.Module,
    *,
    num_classes: int,
    input_shape: Sequence[int],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    features: str | None = None,
    output: int | str | None = None,
    device: str | torch.device | None = None,
) -> WrappedModel:
    """`module` (images -> logits (N, num_classes), or a tuple / dict holding them: `output`) as a
    robustlab model in eval mode, on `device` (default: where the module's parameters are). See
    the module docstring."""
    if not isinstance(module, nn.Module):
        raise ConfigError(f"wrap needs an nn.Module, got {type(module).__name__}")
    model = WrappedModel(module, num_classes, input_shape, mean, std, features, output=output)
    if device is None:
        device = next(module.parameters(), torch.empty(0)).device
    return model.to(device).eval()


def _user_code(spec: str, what: str, call: Callable[[], Any]) -> Any:
    """Run the user's code `call` (importing or calling `spec`'s factory); its failures become one
    `ConfigError` line naming `spec`: an exception, a syntax error, ``exit()`` (SystemExit).
    A Ctrl-C (KeyboardInterrupt) is left to the CLI's interrupt handling."""
    try:
        return call()
    except SystemExit as exc:
        raise ConfigError(f"--module {spec}: {what} called exit({exc.code!r}) instead of returning") from None
    except SyntaxError as exc:
        where = f" ({Path(exc.filename).name}, line {exc.lineno})" if exc.filename else ""
        raise ConfigError(f"--module {spec}: syntax error{where}: {exc.msg}") from None
    except ImportError as exc:
        raise ConfigError(f"--module {spec}: cannot import it: {_one_line(exc)}") from None
    except Exception as exc:
        raise ConfigError(f"--module {spec}: {what} raised {type(exc).__name__}: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _import_factory(spec: str) -> Callable[[], Any]:
    """`pkg.mod:name` or `path/to/file.py:name` -> the attribute `name` (a callable)."""
    target, sep, attr = spec.partition(":")
    if not sep or not target or not attr:
        raise ConfigError(f"--module must look like pkg.mod:factory or file.py:factory, got {spec!r}")
    if not attr.isidentifier():
        raise ConfigError(f"--module {spec}: {attr!r} is not a Python name (pkg.mod:factory)")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ConfigError(f"no Python file at {path}")
        loaded = importlib.util.spec_from_file_location(path.stem, path)
        if loaded is None or loaded.loader is None:
            raise ConfigError(f"cannot import {path}")
        mod = importlib.util.module_from_spec(loaded)
        _user_code(spec, "importing it", lambda: loaded.loader.exec_module(mod))  # type: ignore[union-attr]
    else:
        if not all(part.isidentifier() for part in target.split(".")):
            raise ConfigError(f"--module {spec}: {target!r} is not an absolute module name (pkg.mod:factory "
                              "or file.py:factory; relative names such as ..pkg are not accepted)")
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))  # like `python -m`: modules of the working directory
        mod = _user_code(spec, "importing it", lambda: importlib.import_module(target))
    factory = getattr(mod, attr, None)
    if not callable(factory):
        raise ConfigError(f"{target} has no callable {attr!r}")
    return factory


def load_state(module: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """`module.load_state_dict(state, strict=True)`, a mismatch as one `CheckpointError` line."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(f"{source} does not match the module: {' '.join(first[:3])[:300]}") from None


def load_weights(module: nn.Module, weights: str | Path) -> str:
    """Load a safetensors file into `module` (strict); return a short digest of the file.
    Pickles (.pt/.pth/...) are refused without being read."""
    state, digest = read_safetensors(weights)
    load_state(module, state, weights)
    return digest


def load_factory(
    spec: str,
    weights: str | Path | None,
    *,
    num_classes: int,
    input_shape: Sequence[int],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    device: str | torch.device | None = None,
) -> tuple[RobustModel, str]:
    """Import `spec`'s factory, call it with no arguments, load `weights` (safetensors) into what
    it returns and wrap that (a factory may also return a RobustModel, used as it is).
    Returns (model in eval mode, key "<factory>:<weights digest>")."""
    factory = _import_factory(spec)
    module = _user_code(spec, "the factory", factory)
    if not isinstance(module, nn.Module):
        raise ConfigError(f"{spec} returned a {type(module).__name__}, not an nn.Module (a factory takes no "
                          "arguments and returns the network)")
    digest = load_weights(module, weights) if weights is not None else "untrained"
    if isinstance(module, RobustModel):
        model: RobustModel = module.to(device or "cpu").eval()
    else:
        model = wrap(module, num_classes=num_classes, input_shape=input_shape, mean=mean, std=std, device=device)
        model.config.source = spec  # type: ignore[union-attr]
    return model, f"{spec.rsplit(':', 1)[1]}:{digest}"
