"""`robustlab report RUN_DIR`: HTML (plots embedded), Markdown and JSON of a run directory;
`--format robustbench`: one RobustBench model card (JSON) per model and threat model."""

from __future__ import annotations

from pathlib import Path

import typer

from robustlab.cli.console import out, print_json
from robustlab.cli.options import JSON_HELP
from robustlab.core.errors import ConfigError
from robustlab.report import write_report
from robustlab.report.robustbench import write_model_cards

FORMATS = ("html", "robustbench")


def report(
    run_dir: Path = typer.Argument(..., help="A run directory (holds results.sqlite)."),
    out_dir: Path = typer.Option(None, "--out", help="Where to write (default: RUN_DIR; for robustbench "
                                 "RUN_DIR/robustbench)."),
    fmt: str = typer.Option("html", "--format", help="html: report.html, report.md and report.json; "
                            "robustbench: the zoo's model_info JSON per model and threat model."),
    overwrite: bool = typer.Option(False, "--overwrite", help="robustbench: replace existing model cards."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Write report.html, report.md and report.json for RUN_DIR (or, with --format robustbench,
    RobustBench model cards: <dataset>/<Linf|L2>/<model>.json)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "robustbench":
        cards = write_model_cards(run_dir, out_dir, overwrite=overwrite)
        if json_out:
            print_json({"cards": [str(p) for p in cards]})
        else:
            out.print("\n".join(f"Model card: [bold]{p}[/bold]" for p in cards))
        return
    paths = write_report(run_dir, out_dir)
    if json_out:
        print_json({k: str(v) for k, v in paths.items()})
    else:
        out.print(f"Report: [bold]{paths['html'].resolve()}[/bold]")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
