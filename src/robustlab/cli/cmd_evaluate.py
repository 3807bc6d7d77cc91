"""`robustlab evaluate`: attack a checkpoint over an eps grid; results into a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from robustlab.attacks.registry import attack_parameters, get_attack_class
from robustlab.cli.console import (
    out,
    print_identification,
    print_json,
    print_masking,
    print_results,
    progress_bar,
)
from robustlab.cli.options import parse_pairs
from robustlab.core.digest import model_digest
from robustlab.core.errors import ConfigError
from robustlab.core.runtime import pick_device
from robustlab.data.spec import DataSpec, trained_on
from robustlab.defenses.base import defense_label
from robustlab.evaluate import AttackSpec, Evaluation, eval_set
from robustlab.store.checkpoints import checkpoint_dir, load_checkpoint, read_checkpoint_config

DEFAULT_ATTACKS = ("autoattack", "fgsm")
"""The ensemble (APGD-CE, APGD-T, Square) plus FGSM, which the single-step check needs."""
DEFAULT_EPS = (0.0, 0.05, 0.1, 0.2, 0.5)
"""Linf budgets; 0.5 lets the "accuracy reaches chance at a huge budget" check run."""


def attack_specs(names: list[str], shared: dict[str, Any]) -> list[AttackSpec]:
    """One spec per attack name; each shared parameter goes to the attacks that accept it."""
    used: set[str] = set()
    specs = []
    for name in names:
        get_attack_class(name)
        accepted = attack_parameters(name)
        params = {k: v for k, v in shared.items() if k in accepted}
        used |= set(params)
        specs.append(AttackSpec(name, params))
    unused = set(shared) - used
    if unused:
        raise ConfigError(f"no attack among {names} takes {sorted(unused)}")
    return specs


def evaluate_cmd(
    model_path: Path = typer.Option(..., "--model", help="Checkpoint directory (or its config.json / weights file)."),
    data: str = typer.Option(None, "--data", help="Data set (default: the one the model was trained on)."),
    data_root: Path = typer.Option(None, "--data-root"),
    attack: list[str] = typer.Option(
        None, "--attack", help=f"Attack name (repeatable). Default: {' + '.join(DEFAULT_ATTACKS)}."
    ),
    eps: list[float] = typer.Option(
        None, "--eps", help=f"Budget (repeatable). Default: {' '.join(f'{e:g}' for e in DEFAULT_EPS)}."
    ),
    steps: int = typer.Option(None, "--steps", help="Iterations, for attacks that take them."),
    norm: str = typer.Option(None, "--norm", help="linf or l2, for attacks that take it."),
    restarts: int = typer.Option(None, "--restarts"),
    param: list[str] = typer.Option(None, "--param", "-p", help="key=value for the attacks (repeatable)."),
    n_eval: int = typer.Option(
        None, "--n-eval", min=1, help="Attack a stratified subset of this many test images."
    ),
    run_dir: Path = typer.Option(None, "--run-dir", help="Results directory (default runs/<checkpoint>)."),
    batch_size: int = typer.Option(256, "--batch-size", min=1),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete the run directory's earlier results first."),
    device: str = typer.Option(None, "--device"),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
) -> None:
    """Attack MODEL with each attack at each eps; print the table (worst case per sample included).

    Everything is checked before anything is written; results already in the run directory
    for the same model, data, samples, attack and budget are reused, never mixed.
    """
    ckpt = checkpoint_dir(model_path)
    doc = read_checkpoint_config(ckpt)
    dev = pick_device(device)
    trained = trained_on(doc, str(ckpt))
    if trained is None and not data:
        raise ConfigError("the checkpoint does not say what data it was trained on: pass --data")
    data_spec = (trained or DataSpec(name=data)).override(data, str(data_root) if data_root else None)
    samples = eval_set(data_spec.load(), n_eval, seed=0)
    defense = defense_label(doc.get("defense"))
    shared = {k: v for k, v in {"steps": steps, "norm": norm, "restarts": restarts}.items() if v is not None}
    shared.update(parse_pairs(param, "--param"))
    specs = attack_specs(list(attack or DEFAULT_ATTACKS), shared)
    grid = list(eps) if eps else list(DEFAULT_EPS)
    run_dir = run_dir or Path("runs") / ckpt.resolve().name
    evaluation = Evaluation(run_dir, samples, specs, grid, batch_size=batch_size, defense=defense,
                            overwrite=overwrite)
    model = load_checkpoint(ckpt, dev)
    evaluation.check_model(model)
    key = f"{ckpt.resolve().name}:{model_digest(model)[:10]}"
    info = {"id": ckpt.resolve().name, "config": doc["model"], "defense": doc.get("defense"),
            "checkpoint": str(ckpt),
            "clean_accuracy": (doc.get("metadata") or {}).get("clean_accuracy")}
    with progress_bar(not json_out) as progress:
        result = evaluation.run(model, key, info=info, progress=progress)
    if json_out:
        print_json({"model": key, "run_dir": str(run_dir), "rows": result.rows, "masking": result.masking,
                    "identification": result.identification})
        return
    print_results(result.rows, {key: ckpt.resolve().name})
    print_identification({key: result.identification}, {key: ckpt.resolve().name})
    print_masking(result.masking)
    out.print(f"Results in [bold]{run_dir}[/bold]; `robustlab report {run_dir}` writes the report.")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
