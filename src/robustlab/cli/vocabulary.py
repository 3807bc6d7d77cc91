"""The old spellings of the command line, kept working for one release (robustlab 0.2 drops them).

Every command speaks one vocabulary (README, "Command line"): `--out` for what it writes,
`--data-root`, `--overwrite`, `-p/--param [PREFIX.]KEY=VALUE`, `--seed`, `--batch-size`, `--json`.
An old spelling is rewritten into the new one before click parses the command, with one
deprecation line on stderr; it is not declared, so `--help` shows only the new vocabulary.
`Group` is the click group of the `robustlab` app and of its sub-apps (`defend`): it upgrades the
old spellings of the command it resolves and shows flags as flags (typer prints `<bool>` beside
every flag otherwise, as if it took a value).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.core import TyperGroup

from robustlab.core.errors import ConfigError


@dataclass(frozen=True)
class Renamed:
    """An old option and its new spelling; with `prefix`, the old option's value `k=v` becomes
    `-p PREFIX.k=v` (`prefix` may be "": `--attack-arg k=v` -> `-p k=v`)."""

    new: str
    prefix: str | None = None

    def hint(self) -> str:
        return self.new if self.prefix is None else f"{self.new} {self.prefix}KEY=VALUE"


DEPRECATED: dict[str, dict[str, Renamed]] = {
    "evaluate": {"--run-dir": Renamed("--out")},
    "run": {"--run-dir": Renamed("--out")},
    "demo": {"--fresh": Renamed("--overwrite")},
    "datasets": {"--root": Renamed("--data-root")},
    "train": {"--backbone-arg": Renamed("-p", "backbone."), "--head-arg": Renamed("-p", "head."),
              "--adv-arg": Renamed("-p", "adv."), "--objective-arg": Renamed("-p", "objective.")},
    "anonymize": {"--attack-arg": Renamed("-p", "")},
}
"""Command path -> old option -> its new spelling (anonymize's positional OUTPUT_DIR: `out_folder`)."""


def warn_deprecated(old: str, new: str) -> None:
    """The one deprecation line on stderr."""
    sys.stderr.write(f"warning: {old} is deprecated and goes in robustlab 0.2: use {new}\n")
    sys.stderr.flush()


def upgrade(command: str, args: list[str]) -> list[str]:
    """`args` of `command` (a path: "evaluate", "defend svdd") with its old spellings rewritten,
    one warning line per old option used."""
    table = DEPRECATED.get(command)
    if not table:
        return args
    out: list[str] = []
    warned: set[str] = set()
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            out += args[i:]
            break
        name, eq, value = arg.partition("=")
        old = table.get(name)
        i += 1
        if old is None:
            out.append(arg)
            continue
        if name not in warned:
            warn_deprecated(name, old.hint())
            warned.add(name)
        if old.prefix is None:
            out.append(old.new + eq + value)
        elif eq:
            out += [old.new, old.prefix + value]
        elif i < len(args):
            out += [old.new, old.prefix + args[i]]
            i += 1
        else:
            out.append(old.new)  # no value: click says so, naming the new option
    return out


def out_folder(out: Path | None, positional: Path | None, command: str) -> Path:
    """The folder a command writes, from --out or from the positional folder of old releases
    (with the deprecation line); neither or both is one error line."""
    if positional is not None:
        if out is not None:
            raise ConfigError(f"{command}: give the output folder once, with --out")
        warn_deprecated(f"the positional output folder of `robustlab {command}`", "--out FOLDER")
        return positional
    if out is None:
        raise ConfigError(f"{command} needs --out FOLDER (where to write)")
    return out


def _tidy_help(command: Any) -> None:
    """Show `command`'s flags (and --help) without a value type, and its hidden (old) arguments
    nowhere, usage line included, in --help."""
    params = [*command.params, command.get_help_option(command.context_class(command))]
    for param in params:
        if getattr(param, "is_flag", False) and not getattr(param, "count", False):
            param.metavar = ""
        elif param is not None and param.param_type_name == "argument" and param.hidden:
            param.get_usage_pieces = lambda ctx: []


class Group(TyperGroup):
    """The `robustlab` click group: old spellings upgraded, flags shown as flags."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for command in (self, *self.commands.values()):
            _tidy_help(command)

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if name is not None and not isinstance(command, TyperGroup):
            path = [name]
            while ctx.parent is not None:
                path.insert(0, ctx.info_name)
                ctx = ctx.parent
            rest = upgrade(" ".join(path), rest)
        return name, command, rest
