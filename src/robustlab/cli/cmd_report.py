"""`robustlab report RUN_DIR`: HTML (plots embedded), Markdown and JSON of a run directory."""

from __future__ import annotations

from pathlib import Path

import typer

from robustlab.cli.console import out, print_json
from robustlab.report import write_report


def report(
    run_dir: Path = typer.Argument(..., help="A run directory (holds results.sqlite)."),
    out_dir: Path = typer.Option(None, "--out", help="Where to write (default: RUN_DIR)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
) -> None:
    """Write report.html, report.md and report.json for RUN_DIR."""
    paths = write_report(run_dir, out_dir)
    if json_out:
        print_json({k: str(v) for k, v in paths.items()})
    else:
        out.print(f"Report: [bold]{paths['html'].resolve()}[/bold]")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
