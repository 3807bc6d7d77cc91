"""`robustlab run EXPERIMENT.yaml`: a whole experiment grid into a run directory, resumable."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from robustlab.cli.console import err, out, print_json, print_results, print_training_warnings, progress_bar
from robustlab.cli.options import DEVICE_HELP, JSON_HELP, OVERWRITE_HELP, THREADS_HELP
from robustlab.core.digest import label_name
from robustlab.core.environment import command_line
from robustlab.experiment import ExecutorSpec, ExperimentSpec, run_grid
from robustlab.experiment.estimate import describe_plan, estimate
from robustlab.experiment.limits import Limits
from robustlab.experiment.runner import prepare_grid
from robustlab.report import write_report
from robustlab.report.paper_render import write_paper_tables
from robustlab.store.results import ResultStore


def run(
    experiment: Path = typer.Argument(..., help="Experiment file (YAML or JSON)."),
    run_dir: Path = typer.Option(None, "--out", help="Run directory (default: runs/<name>)."),
    device: str = typer.Option(None, "--device", help=DEVICE_HELP),
    executor: str = typer.Option(None, "--executor", help="local (in-process, the default) or ray."),
    address: str = typer.Option(None, "--address", help="Ray cluster to join (auto, HOST:PORT, ray://...)."),
    num_cpus: float = typer.Option(None, "--num-cpus", min=0, help="CPUs per Ray task."),
    num_gpus: float = typer.Option(None, "--num-gpus", min=0, help="GPUs per Ray task (fractions allowed)."),
    connect_timeout: float = typer.Option(None, "--connect-timeout", min=0.001,
                                          help="Seconds to wait for the Ray cluster at --address (default 30)."),
    max_trainings: int = typer.Option(Limits.trainings, "--max-trainings", min=1,
                                      help="Most models and defended models to train (sweep points count each)."),
    max_cells: int = typer.Option(Limits.cells, "--max-cells", min=1,
                                  help="Most evaluation and transfer cells (model x defense x attack x eps)."),
    max_values: int = typer.Option(Limits.values, "--max-values", min=1,
                                   help="Most values the file may hold once its YAML aliases are expanded."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    threads: int = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    no_self_test: bool = typer.Option(False, "--no-self-test", help="Skip the binarization self-test of the "
                                      "attacks (the file's `self_test:`)."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the file (everything run checks before its first "
                                 "write) and print the plan and its estimated cost; train, run and write nothing."),
) -> None:
    """Train, attack and report a whole experiment; cells already stored are skipped.

    The seeds are the file's (`seeds:`, `train: {seed: N}`), so the file alone reproduces the run.

    Options given here override the file's `executor:` section. A failing task does not stop
    the grid: the others complete, each failure is listed, and the exit code is 1. A file that
    asks for more than the --max-* limits is refused before anything runs.
    """
    from robustlab.cli.app import STATE, on_interrupt

    spec = ExperimentSpec.from_file(experiment, Limits(max_values, max_trainings, max_cells))
    spec = dataclasses.replace(spec, executor=_executor(spec.executor, executor, address, num_cpus, num_gpus,
                                                        connect_timeout))
    if no_self_test:
        spec = dataclasses.replace(spec, self_test=0)
    run_dir = run_dir or Path("runs") / spec.name
    if dry_run:
        _dry_run(spec, run_dir, overwrite, json_out)
        return
    on_interrupt(f"finished trainings, defenses and cells are kept in {run_dir}; run the same command again "
                 "to resume (what is stored is not recomputed)")
    with progress_bar(not json_out) as progress:
        outcome = run_grid(spec, run_dir, device=device, progress=progress, debug=STATE["debug"],
                           overwrite=overwrite, threads=threads, command=command_line(STATE.get("argv")))
    paths = write_report(run_dir)
    tables = write_paper_tables(run_dir)
    failures = [f.line() for f in outcome.failures]
    with ResultStore(run_dir, readonly=True) as store:
        warnings = print_training_warnings(store.get_meta("models", {}) or {})
    if json_out:
        print_json({"rows": outcome.rows, "report": str(paths["html"]), "counts": outcome.counts(),
                    "failures": failures, "warnings": warnings,
                    "tables": str(tables["markdown"]) if tables else None})
    else:
        print_results(outcome.rows, {r["model"]: label_name(r["model"]) for r in outcome.rows}, title=spec.name)
        c = outcome.counts()
        out.print(f"{c['cells']} cells: {c['stored_before']} already stored, {c['computed']} computed, "
                  f"{c['failed']} failed ({c['executor']} executor)"
                  + (f"; {c['selftests']} self-tests computed" if c["selftests"] else ""))
        out.print(f"Report: [bold]{paths['html'].resolve()}[/bold]")
        if tables:
            out.print(f"Tables: [bold]{tables['markdown'].resolve()}[/bold]")
    for line in failures:
        err.print(f"failed: {line}", markup=False)
    if failures:
        raise typer.Exit(1)


def _dry_run(spec: ExperimentSpec, run_dir: Path, overwrite: bool, json_out: bool) -> None:
    """`run --dry-run`: `prepare_grid` (every check of `run` before its first write; the executor
    is not started) and the plan with its cost bound (`robustlab.experiment.estimate`)."""
    plan = estimate(prepare_grid(spec, run_dir, overwrite=overwrite))
    if json_out:
        print_json({"dry_run": True, **plan})
        return
    out.print(describe_plan(plan), markup=False, soft_wrap=True)
    out.print(f"Nothing run or written; `robustlab run` without --dry-run writes to {run_dir} "
              f"({plan['run_dir_state']}).", markup=False, soft_wrap=True)


def _executor(base: ExecutorSpec, name: str | None, address: str | None, num_cpus: float | None,
              num_gpus: float | None, connect_timeout: float | None = None) -> ExecutorSpec:
    given = {"name": name, "address": address, "num_cpus": num_cpus, "num_gpus": num_gpus,
             "connect_timeout": connect_timeout}
    changes = {k: v for k, v in given.items() if v is not None}
    if address is not None and "name" not in changes:
        changes["name"] = "ray"
    return dataclasses.replace(base, **changes)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
