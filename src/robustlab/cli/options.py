"""The command line's one vocabulary: the help of the options every command shares, parsing of
repeated `key=value` options (values read as YAML scalars: 3, 0.1, true, [1, 2]; `PREFIX.key=value`
where a command configures several objects), and of budgets (`--eps 8/255`, `-p eps=8/255`:
`robustlab.core.threat.parse_eps`). The old spellings live in `robustlab.cli.vocabulary`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import typer
import yaml

from robustlab.core.errors import ConfigError
from robustlab.core.threat import parse_eps

BATCH_SIZE = 256
"""Images per forward/backward pass of the commands that attack a trained model (evaluate,
anonymize): memory against speed (an attack whose random draws depend on the batch has it in its
result key). 256 images of a LeNet or a CIFAR ResNet take well under 1 GB on a CPU, enough to keep
its vector units busy; the attacks' default (`evaluate.runner`) is the same."""

DATA_ROOT_HELP = "Where the data set's files are (looked at first; see `robustlab datasets`)."
OVERWRITE_HELP = "Replace (or delete first) what an earlier run wrote at --out."
SEED_HELP = "Random seed: the same seed gives the same numbers."
BATCH_HELP = ("Images per forward/backward pass: memory against speed (an attack whose random draws depend "
              "on it keeps it in its result key).")
TRAIN_BATCH_HELP = "Training batch: images per optimizer step (part of the recipe, recorded in the checkpoint)."
DEVICE_HELP = "cpu, cuda or cuda:N (default: CUDA when present)."
THREADS_HELP = "torch threads (default 1: the same numbers on any machine; recorded with the results)."
JSON_HELP = "Print one JSON object as the last line."
PARAM_HELP = "KEY=VALUE (repeatable; values as YAML scalars, budgets as 8/255)."


def eps_value(text: str) -> float:
    """A typer `parser` for budget options: "8/255" or "0.1" -> float; a bad value is click's
    one-line "Invalid value for '--eps': ..." (exit code 2)."""
    try:
        return parse_eps(text, "eps")
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None


def _is_budget(key: str) -> bool:
    return key == "eps" or key.startswith("eps_")


def _split(pair: str, option: str) -> tuple[str, str]:
    """"steps=40" -> ("steps", "40"); no "=" or no key raises `ConfigError`."""
    key, sep, value = pair.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{option} expects KEY=VALUE, got {pair!r}")
    return key.strip(), value


def _value(name: str, text: str, where: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    if _is_budget(name) and isinstance(value, str):  # eps=8/255
        value = parse_eps(value, f"{where} {name}")
    return value


def parse_pairs(pairs: Sequence[str] | None, option: str) -> dict[str, Any]:
    """["steps=40", "norm=l2"] -> {"steps": 40, "norm": "l2"}; malformed pairs raise `ConfigError`."""
    out: dict[str, Any] = {}
    for pair in pairs or ():
        key, text = _split(pair, option)
        name = key.replace("-", "_")
        out[name] = _value(name, text, option)
    return out


def parse_scoped(pairs: Sequence[str] | None, scopes: Sequence[str], option: str = "-p") -> dict[str, dict[str, Any]]:
    """["backbone.hidden=[16]", "adv.eps=8/255"] -> {"backbone": {"hidden": [16]}, "adv": {"eps": 8/255}, ...}
    (every scope present); a key without one of `scopes` as its prefix raises `ConfigError`."""
    out: dict[str, dict[str, Any]] = {s: {} for s in scopes}
    for pair in pairs or ():
        key, text = _split(pair, option)
        scope, dot, name = key.partition(".")
        if not dot or scope not in out or not name:
            why = f"unknown prefix {scope!r}" if dot else "no prefix"
            raise ConfigError(f"{option} {pair!r}: {why}; a key starts with one of "
                              f"{', '.join(s + '.' for s in scopes)} (e.g. {option} {scopes[0]}.KEY=VALUE)")
        name = name.replace("-", "_")
        out[scope][name] = _value(name, text, f"{option} {scope}.")
    return out
