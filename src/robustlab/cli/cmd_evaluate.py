"""`robustlab evaluate`: attack a checkpoint over an eps grid; results into a run directory."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import typer

from robustlab.attacks.registry import attack_parameters, get_attack_class
from robustlab.cli.console import (
    err,
    out,
    print_identification,
    print_json,
    print_masking,
    print_results,
    progress_bar,
)
from robustlab.cli.options import parse_pairs
from robustlab.core.contract import batched_predict
from robustlab.core.errors import ConfigError
from robustlab.core.runtime import pick_device
from robustlab.data import load_dataset
from robustlab.defenses.base import defense_label
from robustlab.evaluate import (
    AttackSpec,
    evaluate_grid,
    masking_flags,
    record_identification,
    record_probe,
    summarize,
)
from robustlab.experiment.runner import eval_split
from robustlab.models.wrap import load_factory
from robustlab.store.checkpoints import load_checkpoint, read_checkpoint_config
from robustlab.store.results import ResultStore
from robustlab.train.adversarial import recipe_label

DEFAULT_ATTACKS = ("autoattack",)
DEFAULT_EPS = (0.0, 0.05, 0.1, 0.2)


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


def weights_digest(checkpoint: Path) -> str:
    h = hashlib.sha256((checkpoint / "model.safetensors").read_bytes())
    return h.hexdigest()[:10]


def _from_checkpoint(model_path: Path, data: str | None, data_root: Path | None, dev) -> tuple[Any, str, Any, dict]:
    """A robustlab checkpoint, the data it was trained on (unless `data` names another), its
    store key and its entry for the store's "models" metadata."""
    doc = read_checkpoint_config(model_path)
    model = load_checkpoint(model_path, dev)
    trained_on = doc.get("metadata", {}).get("data") or {}
    ds_name = data or trained_on.get("name")
    if not ds_name:
        raise ConfigError("the checkpoint does not say what data it was trained on: pass --data")
    same = data is None or data == trained_on.get("name")
    dataset = load_dataset(
        ds_name, root=data_root or (trained_on.get("root") if same else None),
        resize=trained_on.get("resize") if same else None, seed=trained_on.get("seed", 0) if same else 0,
        train_per_class=trained_on.get("train_per_class") if same else None,
    )
    ckpt = Path(model_path)
    key = f"{ckpt.resolve().name}:{weights_digest(ckpt)}"
    entry = {"id": ckpt.resolve().name, "config": doc["model"], "defense": doc.get("defense"),
             "checkpoint": str(ckpt), "clean_accuracy": doc.get("metadata", {}).get("clean_accuracy"),
             "train": doc.get("metadata", {}).get("train"),
             "training": recipe_label(doc.get("metadata", {}).get("train"))}
    return model, key, dataset, entry


def evaluate_cmd(
    model_path: Path = typer.Option(None, "--model", help="Checkpoint directory (or use --module)."),
    module: str = typer.Option(None, "--module", help="Your own model: pkg.mod:factory or file.py:factory, "
                               "a no-argument callable returning an nn.Module (logits out)."),
    weights: Path = typer.Option(None, "--weights", help="safetensors weights for --module (never a pickle)."),
    mean: list[float] = typer.Option(None, "--mean", help="Per-channel mean for --module's input (repeatable)."),
    std: list[float] = typer.Option(None, "--std", help="Per-channel std for --module's input (repeatable)."),
    data: str = typer.Option(None, "--data", help="Data set (default: the one the model was trained on)."),
    data_root: Path = typer.Option(None, "--data-root"),
    attack: list[str] = typer.Option(None, "--attack", help="Attack name (repeatable). Default: autoattack."),
    eps: list[float] = typer.Option(None, "--eps", help="Budget (repeatable). Default: 0 0.05 0.1 0.2."),
    steps: int = typer.Option(None, "--steps", help="Iterations, for attacks that take them."),
    norm: str = typer.Option(None, "--norm", help="linf or l2, for attacks that take it."),
    restarts: int = typer.Option(None, "--restarts"),
    param: list[str] = typer.Option(None, "--param", "-p", help="key=value for the attacks (repeatable)."),
    n_eval: int = typer.Option(None, "--n-eval", help="Attack a stratified subset of this many test images."),
    run_dir: Path = typer.Option(None, "--run-dir", help="Results directory (default runs/<checkpoint>)."),
    batch_size: int = typer.Option(256, "--batch-size", min=1),
    device: str = typer.Option(None, "--device"),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
) -> None:
    """Attack MODEL (a checkpoint, or --module your own nn.Module with --weights) with each attack at
    each eps; print the table (worst case per sample included)."""
    dev = pick_device(device)
    if (model_path is None) == (module is None):
        raise ConfigError("give either --model CHECKPOINT or --module pkg.mod:factory")
    if module is not None:
        if data is None:
            raise ConfigError("--module needs --data (the data set to evaluate on)")
        dataset = load_dataset(data, root=data_root)
        model, key = load_factory(module, weights, num_classes=dataset.num_classes, input_shape=dataset.input_shape,
                                  mean=mean or None, std=std or None, device=dev)
        name = key.split(":")[0]
        clean = float((batched_predict(model, dataset.x_test) == dataset.y_test).float().mean())
        config = getattr(model, "config", None)
        entry = {"id": name, "config": config.to_dict() if config is not None else {"module": module},
                 "module": module, "weights": str(weights),
                 "clean_accuracy": clean}
        default_run = Path("runs") / name
    else:
        if weights is not None or mean or std:
            raise ConfigError("--weights, --mean and --std go with --module, not --model")
        model, key, dataset, entry = _from_checkpoint(model_path, data, data_root, dev)
        name = entry["id"]
        default_run = Path("runs") / name
    x, y = eval_split(dataset, n_eval, seed=0)
    defense = defense_label(entry.get("defense"))
    shared = {k: v for k, v in {"steps": steps, "norm": norm, "restarts": restarts}.items() if v is not None}
    shared.update(parse_pairs(param, "--param"))
    specs = attack_specs(list(attack or DEFAULT_ATTACKS), shared)
    grid = list(eps) if eps else list(DEFAULT_EPS)
    run_dir = run_dir or default_run
    with ResultStore(run_dir) as store, progress_bar(not json_out) as progress:
        models = store.get_meta("models", {}) or {}
        models[key] = entry
        store.set_meta("models", models)
        store.set_meta("data", {"name": dataset.name, "source": dataset.source, "n_train": len(dataset.y_train),
                                "n_test": len(dataset.y_test), "n_eval": len(y),
                                "input_shape": list(dataset.input_shape)})
        record_probe(store, key, model, x, y)
        identification = record_identification(store, key, model, x, y, grid)
        evaluate_grid(model, key, x, y, specs, grid, store, defense=defense, batch_size=batch_size,
                      progress=progress, on_plan=lambda plan: err.print(plan.describe()))
        rows = summarize(store, models=[key])
        flags = masking_flags(store, models=[key])
    if json_out:
        print_json({"model": key, "run_dir": str(run_dir), "training": entry.get("training"), "rows": rows,
                    "masking": flags, "identification": identification})
        return
    print_results(rows, {key: name})
    print_identification({key: identification}, {key: name})
    print_masking(flags)
    out.print(f"Results in [bold]{run_dir}[/bold]; `robustlab report {run_dir}` writes the report.")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
