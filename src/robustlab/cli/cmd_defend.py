"""`robustlab defend svdd`: build the M-SVDD defense of a trained classifier and save it.

The defended model is saved as a checkpoint with a "defense" section (it loads with
`load_checkpoint` like any model); W~-LC (the fine-tuned backbone with the original linear
head) is saved beside it under OUT/linear, and the Table 1 accuracies go to the metadata.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import typer

from robustlab.cli.console import out, print_json
from robustlab.core.contract import batched_predict
from robustlab.core.errors import CheckpointError, ConfigError
from robustlab.core.runtime import pick_device, seed_everything
from robustlab.data.spec import DataSpec, trained_on
from robustlab.data.splits import stratified_split
from robustlab.defenses.svdd import MSVDDConfig, SVDDTrainConfig, build_msvdd
from robustlab.models import Classifier
from robustlab.store.checkpoints import (
    check_checkpoint_target,
    checkpoint_dir,
    load_checkpoint,
    read_checkpoint_config,
    save_checkpoint,
)
from robustlab.train import TrainConfig

defend_app = typer.Typer(help="Build a defended model from a trained one.", no_args_is_help=True)


def _accuracy(model, x, y) -> float:
    return float((batched_predict(model, x) == y).float().mean()) if len(y) else 0.0


@defend_app.command("svdd")
def svdd_cmd(
    model_path: Path = typer.Option(..., "--model", help="Checkpoint of a trained classifier (linear head)."),
    data: str = typer.Option(
        None, "--data", help="Data set (default: the one the checkpoint was trained on)."
    ),
    data_root: Path = typer.Option(None, "--data-root", help="Where the data set's files are."),
    resize: int = typer.Option(None, "--resize", help="Resize images to SIZE x SIZE (default: as trained)."),
    out_dir: Path = typer.Option(..., "--out", help="Directory for the defended checkpoint."),
    projections: int = typer.Option(128, "--projections", min=1, help="M, projection vectors per class."),
    positive_epochs: int = typer.Option(
        30, "--positive-epochs", min=0, help="Stage 1 (positives only), max."
    ),
    svdd_epochs: int = typer.Option(20, "--svdd-epochs", min=0, help="Stage 2 (positives + negatives)."),
    c_p: float = typer.Option(10.0, "--c-p", help="Weight of the positive hinge (eq. 11)."),
    c_n: float = typer.Option(10.0, "--c-n", help="Weight of the negative hinge (eq. 12)."),
    finetune_epochs: int = typer.Option(3, "--finetune-epochs", min=0, help="Backbone fine-tuning epochs."),
    finetune_lr: float = typer.Option(1e-4, "--finetune-lr", help="Adam learning rate of the fine-tuning."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Training share held out to tune beta."),
    budget: float = typer.Option(0.03, "--budget", help="Clean-accuracy loss allowed for beta = O_d."),
    beta: str = typer.Option("O_c", "--beta", help="Active beta: O_c, O_d, one, or a number."),
    v_a: float = typer.Option(0.001, "--v-a", help="Constant response of the adversarial class."),
    v_p: float = typer.Option(1.0, "--v-p", help="Clamp ceiling of the SVDD responses."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option(None, "--device", help="cpu, cuda or cuda:N."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing checkpoint at --out."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
) -> None:
    """Replace the linear head of MODEL by one SVDD per class plus an adversarial class (M-SVDD-D)."""
    dev = pick_device(device)
    doc = read_checkpoint_config(model_path)
    if checkpoint_dir(model_path).resolve() == out_dir.resolve():
        raise ConfigError(f"--out {out_dir} is the input checkpoint; choose another directory")
    check_checkpoint_target(out_dir, overwrite=overwrite)
    if doc.get("defense"):
        raise ConfigError(f"{model_path} is already a defended model ({doc['defense'].get('name')})")
    base = load_checkpoint(model_path, dev)
    if not isinstance(base, Classifier) or base.config.head != "softmax":
        raise CheckpointError(
            f"{model_path}: M-SVDD replaces a linear (softmax) head; got {base.config.head}"
        )
    trained = trained_on(doc, str(model_path))
    if trained is None and not data:
        raise ConfigError("the checkpoint does not say which data it was trained on: give --data")
    spec = (trained or DataSpec(name=data, seed=seed)).override(data, str(data_root) if data_root else None)
    if resize is not None:
        spec = replace(spec, resize=resize)
    dataset = spec.load()
    if dataset.input_shape != base.input_shape or dataset.num_classes != base.num_classes:
        raise ConfigError(
            f"{data} gives {dataset.num_classes} classes of {dataset.input_shape}, the model "
            f"expects {base.num_classes} of {base.input_shape} (check --data/--resize)"
        )
    if not 0 < val_fraction < 1:
        raise ConfigError(f"--val-fraction must lie in (0, 1), got {val_fraction}")
    beta_mode: str | float = beta if beta in ("O_c", "O_d", "one") else _number(beta)
    train_idx, val_idx = stratified_split(dataset.y_train, val_fraction, seed)
    x_tr, y_tr = dataset.x_train[train_idx].to(dev), dataset.y_train[train_idx].to(dev)
    x_val, y_val = dataset.x_train[val_idx], dataset.y_train[val_idx]
    cfg = MSVDDConfig(
        num_projections=projections,
        svdd=SVDDTrainConfig(
            positive_epochs=positive_epochs, epochs=svdd_epochs, c_p=c_p, c_n=c_n, seed=seed
        ),
        finetune=TrainConfig(
            epochs=finetune_epochs, optimizer="adam", lr=finetune_lr, weight_decay=0.0, seed=seed
        ),
        v_p=v_p,
        v_a=v_a,
        budget=budget,
        beta=beta_mode,
        seed=seed,
    )
    seed_everything(seed)
    start = time.perf_counter()
    built = build_msvdd(base, x_tr, y_tr, x_val, y_val, cfg)
    seconds = time.perf_counter() - start
    model = built.model
    x_te, y_te = dataset.x_test, dataset.y_test
    table1 = {"W-LC": _accuracy(base, x_te, y_te), "W~-LC": _accuracy(model.linear_classifier(), x_te, y_te)}
    for mode in ("O_c", "O_d"):
        model.svdd.set_beta_mode(mode)
        table1[f"W~-SVDD(beta={mode})"] = _accuracy(model, x_te, y_te)
    model.svdd.set_beta_mode(beta_mode)
    meta = {
        "data": spec.to_dict(),
        "defense_build": cfg.to_dict(),
        "source_checkpoint": str(model_path),
        "seconds": seconds,
        "test_accuracy": table1,
        "beta": {
            "O_c": built.beta.beta_oc.tolist(),
            "O_d": built.beta.beta_od.tolist(),
            "O_d_scale": built.beta.scale_od,
            "val_accuracy_O_c": built.beta.accuracy_oc,
            "val_accuracy_O_d": built.beta.accuracy_od,
        },
        "svdd_history": built.svdd_history,
    }
    save_checkpoint(model, out_dir, metadata=meta, overwrite=overwrite)
    save_checkpoint(
        model.linear_classifier(),
        out_dir / "linear",
        metadata={"data": meta["data"], "note": "W~-LC of the M-SVDD defense in the parent folder"},
    )
    if json_out:
        print_json({"checkpoint": str(out_dir), "linear": str(out_dir / "linear"), **meta})
        return
    for name, acc in table1.items():
        out.print(f"{name:22s} test accuracy {100 * acc:6.2f}%")
    out.print(
        f"beta O_d = {built.beta.scale_od:.2f} x O_c; built in {seconds:.1f} s; "
        f"checkpoint: [bold]{out_dir}[/bold] (W~-LC: {out_dir / 'linear'})"
    )


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--beta must be O_c, O_d, one or a positive number, got {text!r}") from None
    if value <= 0:
        raise ConfigError(f"--beta must be positive, got {value}")
    return value


def register(app: typer.Typer) -> None:
    app.add_typer(defend_app, name="defend")
