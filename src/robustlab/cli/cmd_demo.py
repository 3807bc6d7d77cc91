"""`robustlab demo`: train small models on digits, attack them over an eps grid, write the report."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from robustlab.cli.console import (
    err,
    out,
    print_identification,
    print_json,
    print_masking,
    print_results,
    print_training_warnings,
    progress_bar,
)
from robustlab.cli.options import DEVICE_HELP, JSON_HELP, OVERWRITE_HELP, SEED_HELP
from robustlab.core.digest import label_name
from robustlab.evaluate import identification_results, masking_flags
from robustlab.experiment import ExperimentSpec, run_experiment
from robustlab.experiment.presets import DEMO
from robustlab.report import write_report
from robustlab.store.results import ResultStore


def demo(
    out_dir: Path = typer.Option(Path("robustlab-demo"), "--out", help="Run directory (reused on rerun)."),
    device: str = typer.Option(None, "--device", help=DEVICE_HELP),
    seed: int = typer.Option(0, "--seed", help=SEED_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Train softmax, triplet (k-NN) and PCL heads on digits, attack them, print the table, write the report."""
    spec = ExperimentSpec.from_dict({**DEMO, "seeds": [seed]})  # one seed: the model ids stay as they are
    start = time.perf_counter()
    with progress_bar() as progress:
        rows = run_experiment(spec, out_dir, device=device, progress=progress, overwrite=overwrite)
    paths = write_report(out_dir)
    seconds = time.perf_counter() - start
    names = {r["model"]: label_name(r["model"]) for r in rows}
    if json_out:
        print_json({"rows": rows, "report": {k: str(v) for k, v in paths.items()}, "seconds": seconds})
        return
    attacks = ", ".join(a["name"].upper() for a in DEMO["attacks"])
    print_results(rows, names, title=f"robustlab demo: digits (8x8), softmax vs metric heads under {attacks}")
    with ResultStore(out_dir, readonly=True) as store:
        print_identification(identification_results(store), names)
        print_masking(masking_flags(store))
        print_training_warnings(store.get_meta("models", {}) or {})
    out.print(f"Report: [bold]{paths['html'].resolve()}[/bold] (also {paths['markdown'].name}, {paths['json'].name})")
    err.print(f"[dim]done in {seconds:.1f} s[/dim]")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
