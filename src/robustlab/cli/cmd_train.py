"""`robustlab train`: train a model (backbone + head) on a data set and save a checkpoint."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer

from robustlab.cli.app import on_interrupt
from robustlab.cli.console import err, out, print_json, progress_bar
from robustlab.cli.options import (
    DATA_ROOT_HELP,
    DEVICE_HELP,
    JSON_HELP,
    OVERWRITE_HELP,
    PARAM_HELP,
    SEED_HELP,
    TRAIN_BATCH_HELP,
    eps_value,
    parse_scoped,
)
from robustlab.core.contract import batched_predict
from robustlab.core.errors import ConfigError
from robustlab.core.runtime import pick_device, seed_everything
from robustlab.data import load_dataset
from robustlab.data.spec import DataSpec
from robustlab.models import build_model
from robustlab.models.config import ModelConfig
from robustlab.store.checkpoints import check_checkpoint_target, checkpoint_name, save_checkpoint
from robustlab.train import TrainConfig, distributed, train
from robustlab.train.adversarial import METHODS, AdvConfig
from robustlab.train.defaults import training_warning


def adv_config(method: str | None, eps: float | None, steps: int | None, pairs: dict[str, Any]) -> AdvConfig | None:
    """The recipe from the --adv options and `-p adv.*`: recipe fields by name, the rest are the method's args."""
    if method is None:
        if eps is not None or steps is not None or pairs:
            raise ConfigError("--adv-eps, --adv-steps and -p adv.KEY=VALUE need --adv METHOD")
        return None
    fields = {f.name for f in dataclasses.fields(AdvConfig)} - {"method", "args"}
    doc: dict[str, Any] = {k: v for k, v in pairs.items() if k in fields}
    doc.update({k: v for k, v in {"eps": eps, "steps": steps}.items() if v is not None})
    return AdvConfig(method=method, args={k: v for k, v in pairs.items() if k not in fields}, **doc)


def train_cmd(
    data: str = typer.Option("digits", "--data", help="Data set name (see `robustlab datasets`)."),
    data_root: Path = typer.Option(None, "--data-root", help=DATA_ROOT_HELP),
    backbone: str = typer.Option("lenet", "--backbone", help="mlp, lenet, cnn6, resnet, mobilenetv2, vgg."),
    head: str = typer.Option("softmax", "--head", help="Classification or metric head (e.g. softmax)."),
    resize: int = typer.Option(None, "--resize", help="Resize images to SIZE x SIZE."),
    train_per_class: int = typer.Option(None, "--train-per-class", help="Training images per class."),
    epochs: int = typer.Option(None, "--epochs", min=0, help="Default: adapts to the data size (defaults.py)."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help=TRAIN_BATCH_HELP + " Default 64."),
    optimizer: str = typer.Option(None, "--optimizer", help="adam (default) or sgd."),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate (default 2e-3 for adam, 0.05 for sgd)."),
    weight_decay: float = typer.Option(None, "--weight-decay", help="Default 0 for adam, 5e-4 for sgd."),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine, step or constant."),
    seed: int = typer.Option(0, "--seed", help=SEED_HELP),
    adv: str = typer.Option(None, "--adv", help="Adversarial training: " + ", ".join(METHODS) + "."),
    adv_eps: float = typer.Option(None, "--adv-eps", parser=eps_value, metavar="<eps>",
                                  help="Training budget, e.g. 0.1 or 8/255 (default 0.1; pixel units)."),
    adv_steps: int = typer.Option(None, "--adv-steps", help="Training attack steps (default: the method's)."),
    param: list[str] = typer.Option(
        None, "--param", "-p", help="PREFIX.KEY=VALUE, as in an experiment file: backbone.* and head.* (the "
        "model's args), objective.* (the training loss), adv.* (the recipe: norm, eps_min, sampling, step_size, "
        "warmup_epochs, guard, or the method's own: beta, alpha, weight, margin, noise). " + PARAM_HELP),
    out_dir: Path = typer.Option(None, "--out", help="Checkpoint directory (default checkpoints/<name>)."),
    device: str = typer.Option(None, "--device", help=DEVICE_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Train BACKBONE + HEAD on DATA; save safetensors weights + JSON config.

    Under `torchrun --nproc_per_node N` the processes train one model data-parallel (DDP);
    rank 0 saves the checkpoint and prints.
    """
    params = parse_scoped(param, ("backbone", "head", "adv", "objective"))
    cfg = TrainConfig(
        epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
        schedule=schedule, seed=seed, objective_args=params["objective"],
        adv=adv_config(adv, adv_eps, adv_steps, params["adv"]),
    )
    dev = distributed.init_from_env(pick_device(device))
    dataset = load_dataset(data, root=data_root, resize=resize, seed=seed, train_per_class=train_per_class)
    config = ModelConfig(
        backbone=backbone, head=head, num_classes=dataset.num_classes, input_shape=dataset.input_shape,
        backbone_args=params["backbone"], head_args=params["head"],
    )
    cfg = cfg.resolved(len(dataset.y_train), head)
    target = out_dir or Path("checkpoints") / checkpoint_name(config)
    check_checkpoint_target(target, overwrite=overwrite)  # before any training
    on_interrupt(f"no checkpoint was written to {target} (training does not resume: run the command again)")
    seed_everything(seed)
    model = build_model(config).to(dev)
    start = time.perf_counter()
    with progress_bar(not json_out) as progress:
        history = train(
            model, dataset.x_train.to(dev), dataset.y_train.to(dev), cfg,
            x_test=dataset.x_test.to(dev), y_test=dataset.y_test.to(dev),
            progress=(lambda s, t, log: progress(f"train {backbone}/{head}", s, t)) if distributed.is_main() else None,
        )
    seconds = time.perf_counter() - start
    if not distributed.is_main():
        distributed.finish()
        return
    clean = float((batched_predict(model, dataset.x_test) == dataset.y_test).float().mean())
    warning = training_warning(clean, dataset.num_classes, data)
    meta = {
        "data": DataSpec(name=data, root=str(data_root) if data_root else None, resize=resize, seed=seed,
                         train_per_class=train_per_class).to_dict(),
        "train": cfg.to_dict(), "clean_accuracy": clean, "seconds": seconds,
        "history": [asdict(h) for h in history], "warning": warning,
        "overfitting_epochs": [h.epoch for h in history if h.extra.get("overfitting")],
    }
    save_checkpoint(model, target, metadata=meta, overwrite=overwrite)
    on_interrupt(f"the checkpoint was saved in {target}")
    distributed.finish()
    if json_out:
        print_json({"checkpoint": str(target), "clean_accuracy": clean, "seconds": seconds,
                    "model": config.to_dict(), "train": cfg.to_dict(), "history": meta["history"],
                    "warning": warning, "overfitting_epochs": meta["overfitting_epochs"]})
        if warning:
            err.print(f"[bold yellow]warning:[/bold yellow] {warning}")
        return
    for h in history:
        acc = f"{100 * h.test_accuracy:.1f}%" if h.test_accuracy is not None else "-"
        err.print(f"[dim]epoch {h.epoch:3d}  loss {h.loss:.4f}  train {100 * h.train_accuracy:.1f}%  test {acc}[/dim]")
    if meta["overfitting_epochs"]:
        err.print(f"[yellow]warning: catastrophic overfitting at epochs {meta['overfitting_epochs']} "
                  "(PGD far below FGSM on the guard batch; see history)[/yellow]")
    out.print(f"clean test accuracy {100 * clean:.2f}% in {seconds:.1f} s ({cfg.optimizer}, lr {cfg.lr:g}, "
              f"{cfg.epochs} epochs, batch {cfg.batch_size}); checkpoint: [bold]{target}[/bold]")
    if warning:
        out.print(f"[bold yellow]warning:[/bold yellow] {warning}")


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
