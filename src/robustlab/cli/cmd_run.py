"""`robustlab run EXPERIMENT.yaml`: a whole experiment grid into a run directory, resumable."""

from __future__ import annotations

from pathlib import Path

import typer

from robustlab.cli.console import err, out, print_json, print_results, print_training_warnings, progress_bar
from robustlab.experiment import ExperimentSpec, run_experiment
from robustlab.report import write_report
from robustlab.store.results import ResultStore


def run(
    experiment: Path = typer.Argument(..., help="Experiment file (YAML or JSON)."),
    run_dir: Path = typer.Option(None, "--run-dir", help="Run directory (default: runs/<name>)."),
    device: str = typer.Option(None, "--device", help="cpu, cuda or cuda:N."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
) -> None:
    """Train, attack and report a whole experiment; cells already stored are skipped."""
    spec = ExperimentSpec.from_file(experiment)
    run_dir = run_dir or Path("runs") / spec.name
    with progress_bar() as progress:
        rows = run_experiment(spec, run_dir, device=device, progress=progress,
                              on_plan=lambda mid, plan: err.print(f"[dim]{mid}: {plan.describe()}[/dim]"))
    paths = write_report(run_dir)
    with ResultStore(run_dir) as store:
        warnings = print_training_warnings(store.get_meta("models", {}) or {})
    if json_out:
        print_json({"rows": rows, "report": str(paths["html"]), "warnings": warnings})
        return
    print_results(rows, {r["model"]: r["model"].split(":")[0] for r in rows}, title=spec.name)
    out.print(f"Report: [bold]{paths['html'].resolve()}[/bold]")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
