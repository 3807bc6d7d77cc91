"""The `robustlab` command. Errors print as one line (traceback with --debug), exit code 2."""

from __future__ import annotations

import errno
import importlib
import signal
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# Light on purpose: typer, torch and the commands load inside `main`, so a Ctrl-C while they
# load is handled like any other (one line, exit code 130), not a traceback.
STATE: dict[str, Any] = {"debug": False, "interrupt": None}

# Each module defines `register(app)`; add new command modules here.
COMMAND_MODULES = ("demo", "train", "evaluate", "report", "datasets", "run", "defend", "anonymize", "convert")

_APP: dict[tuple[str, ...], Any] = {}
"""The app, by the defenses registered when it was built (`defend` has one subcommand each)."""


def on_interrupt(note: str | None) -> None:
    """What a Ctrl-C from now on leaves behind and how to resume (printed after "interrupted: ")."""
    STATE["interrupt"] = note


def _app() -> Any:
    """The typer app with every command registered (built again when a plugin adds a defense)."""
    from robustlab.defenses import DEFENSES

    key = tuple(DEFENSES.names())
    if key not in _APP:
        import typer

        from robustlab.cli.vocabulary import Group

        app = typer.Typer(
            name="robustlab",
            cls=Group,
            help="Train, attack, defend and honestly measure image classifiers.",
            no_args_is_help=True,
            add_completion=False,
            pretty_exceptions_enable=False,
        )

        @app.callback()
        def _root(
            debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
            version: bool = typer.Option(False, "--version", "-V", is_eager=True, callback=_print_version,
                                         help="Print robustlab's version (and torch's) and exit."),
            plugin: list[str] = typer.Option(
                None, "--plugin", metavar="MODULE",
                help="Import MODULE first (repeatable): a plugin that registers attacks, defenses, heads, "
                     "report sections, ... (code you choose to run)."),
        ) -> None:
            STATE["debug"] = debug  # the plugins were imported before the command line was parsed

        for name in COMMAND_MODULES:
            importlib.import_module(f"robustlab.cli.cmd_{name}").register(app)
        _APP.clear()
        _APP[key] = app
    return _APP[key]


def _plugins(args: list[str]) -> None:
    """Load the installed plugins (entry points, once) and import every ``--plugin MODULE`` given
    before the command, so that what they register (a `defend` subcommand too) exists when the
    command line is parsed. `--version` loads none."""
    from robustlab.core.plugins import import_plugins, load_entry_points

    modules, i = [], 0
    while i < len(args) and args[i].startswith("-"):
        if args[i] in ("--version", "-V"):
            return
        if args[i] == "--plugin" and i + 1 < len(args):
            modules.append(args[i + 1])
            i += 2
            continue
        if args[i].startswith("--plugin="):
            modules.append(args[i].partition("=")[2])
        i += 1
    load_entry_points()
    import_plugins(modules, for_workers=True)


def _print_version(value: bool) -> None:
    """`robustlab --version`: "robustlab 0.1.0 (torch 2.x, Python 3.y)", exit code 0."""
    if value:
        import platform

        import torch
        import typer

        from robustlab import __version__

        sys.stdout.write(f"robustlab {__version__} (torch {torch.__version__}, Python {platform.python_version()})\n")
        raise typer.Exit()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning robustlab errors into one clear line and exit code 2.

    Usage errors (a bad option or value) are one line too, exit code 2; --help prints as usual.
    Ctrl-C (SIGINT) prints one line saying what was kept and how to resume, exit code 130.
    """
    STATE["interrupt"] = None
    try:
        return _main(argv)
    except KeyboardInterrupt:
        note = STATE["interrupt"]
        sys.stderr.write(f"interrupted: {note}\n" if note else "interrupted\n")
        return 130


@contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold a Ctrl-C that comes while the libraries load until they have loaded, then raise it.

    A KeyboardInterrupt inside numpy's or scipy's import can leave a half-initialised module in
    `sys.modules` that fails later with an unrelated error; held, it becomes the usual one line.
    A second Ctrl-C does not wait (a plugin that hangs while it imports can still be stopped).
    """
    pending: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        if pending:
            raise KeyboardInterrupt
        pending.append(signum)

    try:
        previous = signal.signal(signal.SIGINT, hold)
    except ValueError:  # not the main thread (e.g. called from a worker): nothing to defer
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt


def _main(argv: list[str] | None) -> int:
    with _interrupts_deferred():
        try:  # typer >= 0.23 carries its own copy of click
            from typer._click import exceptions as _click
        except ImportError:  # pragma: no cover - older typer on the real click
            from click import exceptions as _click  # type: ignore[no-redef]

        import typer

        from robustlab.core.errors import RobustlabError

    args = list(sys.argv[1:] if argv is None else argv)
    STATE["debug"] = "--debug" in args
    STATE["argv"] = [a for a in args if a != "--debug"]  # the command a run records to be reproduced
    if STATE["debug"]:  # accepted anywhere: `robustlab evaluate ... --debug` as well as `robustlab --debug ...`
        args = ["--debug", *(a for a in args if a != "--debug")]
    try:
        with _interrupts_deferred():  # the installed and requested plugins, then every command
            _plugins(args)
            app = _app()
        code = app(args=args, prog_name="robustlab", standalone_mode=False)  # an int from typer.Exit
    except _click.NoArgsIsHelpError as exc:  # `robustlab` alone: the help, as usual
        sys.stdout.write(exc.format_message() + "\n")
        return 0
    except _click.UsageError as exc:  # a bad option or value: one line too
        where = exc.ctx.command_path if exc.ctx is not None else "robustlab"
        sys.stderr.write(f"error: {where}: {_one_line(exc.format_message())} (see {where} --help)\n")
        return 2
    except typer.Abort:  # typer's own Ctrl-C (in a prompt)
        raise KeyboardInterrupt from None
    except _click.ClickException as exc:
        sys.stderr.write(f"error: {_one_line(exc.format_message())}\n")
        return exc.exit_code
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except RobustlabError as exc:
        if STATE["debug"]:
            traceback.print_exc()
        sys.stderr.write(f"error: {_one_line(exc)}\n")
        return 2
    except OSError as exc:  # the file system said no: name the path and the reason
        if STATE["debug"]:
            traceback.print_exc()
        sys.stderr.write(f"error: {_os_message(exc)}\n")
        return 2
    except Exception as exc:  # a bug: still one line unless --debug
        if STATE["debug"]:
            traceback.print_exc()
        sys.stderr.write(
            f"internal error: {type(exc).__name__}: {_one_line(exc)} (run with --debug for the traceback)\n"
        )
        return 1
    if code == 130:  # typer turns a Ctrl-C inside a command into exit code 130, silently
        raise KeyboardInterrupt
    return code if isinstance(code, int) else 0


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _os_message(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full: {where}{exc.strerror}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"read-only or not permitted: {where}{exc.strerror}"
    if exc.errno == errno.ENAMETOOLONG:
        return f"a file name is too long for the file system: {where}{exc.strerror}"
    return f"{where}{exc.strerror or _one_line(exc)}"


def run() -> None:
    """Console-script entry point (`robustlab`, `python -m robustlab`)."""
    code = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command is over: a late Ctrl-C changes nothing
    sys.exit(code)
