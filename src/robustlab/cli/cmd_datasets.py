"""`robustlab datasets`: each data set, and where it was found or why not."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from robustlab.cli.console import out, print_json
from robustlab.cli.options import DATA_ROOT_HELP, JSON_HELP
from robustlab.data import list_datasets


def datasets(
    root: Path = typer.Option(None, "--data-root", help=DATA_ROOT_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List the data sets robustlab can load, and where each was found (or why not)."""
    found = list_datasets(root)
    if json_out:
        print_json([{"name": d.name, "available": d.available, "where": d.where} for d in found])
        return
    table = Table("data set", "available", "where / why not")
    for d in found:
        table.add_row(d.name, "[green]yes[/green]" if d.available else "[red]no[/red]", d.where)
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("datasets")(datasets)
