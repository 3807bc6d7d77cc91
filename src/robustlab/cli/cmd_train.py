"""`robustlab train`: train a model (backbone + head) on a data set and save a checkpoint."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import typer

from robustlab.cli.console import err, out, print_json, progress_bar
from robustlab.cli.options import parse_pairs
from robustlab.core.contract import batched_predict
from robustlab.core.runtime import pick_device, seed_everything
from robustlab.data import load_dataset
from robustlab.data.spec import DataSpec
from robustlab.models import build_model
from robustlab.models.config import ModelConfig
from robustlab.store.checkpoints import check_checkpoint_target, checkpoint_name, save_checkpoint
from robustlab.train import TrainConfig, train


def train_cmd(
    data: str = typer.Option("digits", "--data", help="Data set name (see `robustlab datasets`)."),
    data_root: Path = typer.Option(None, "--data-root", help="Where the data set's files are."),
    backbone: str = typer.Option("lenet", "--backbone", help="mlp, lenet, cnn6, resnet, mobilenetv2, vgg."),
    head: str = typer.Option("softmax", "--head", help="Classification or metric head (e.g. softmax)."),
    backbone_arg: list[str] = typer.Option(None, "--backbone-arg", help="key=value for the backbone."),
    head_arg: list[str] = typer.Option(None, "--head-arg", help="key=value for the head."),
    resize: int = typer.Option(None, "--resize", help="Resize images to SIZE x SIZE."),
    train_per_class: int = typer.Option(None, "--train-per-class", help="Training images per class."),
    epochs: int = typer.Option(10, "--epochs", min=0),
    batch_size: int = typer.Option(128, "--batch-size", min=1),
    optimizer: str = typer.Option("sgd", "--optimizer", help="sgd or adam."),
    lr: float = typer.Option(0.05, "--lr", help="Peak learning rate."),
    weight_decay: float = typer.Option(5e-4, "--weight-decay"),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine, step or constant."),
    objective_arg: list[str] = typer.Option(None, "--objective-arg", help="key=value for the training loss."),
    seed: int = typer.Option(0, "--seed"),
    out_dir: Path = typer.Option(None, "--out", help="Checkpoint directory (default checkpoints/<name>)."),
    device: str = typer.Option(None, "--device", help="cpu, cuda or cuda:N."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing checkpoint at --out."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
) -> None:
    """Train BACKBONE + HEAD on DATA; save safetensors weights + JSON config."""
    cfg = TrainConfig(
        epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
        schedule=schedule, seed=seed, objective_args=parse_pairs(objective_arg, "--objective-arg"),
    )
    dev = pick_device(device)
    dataset = load_dataset(data, root=data_root, resize=resize, seed=seed, train_per_class=train_per_class)
    config = ModelConfig(
        backbone=backbone, head=head, num_classes=dataset.num_classes, input_shape=dataset.input_shape,
        backbone_args=parse_pairs(backbone_arg, "--backbone-arg"), head_args=parse_pairs(head_arg, "--head-arg"),
    )
    target = out_dir or Path("checkpoints") / checkpoint_name(config)
    check_checkpoint_target(target, overwrite=overwrite)  # before any training
    seed_everything(seed)
    model = build_model(config).to(dev)
    start = time.perf_counter()
    with progress_bar(not json_out) as progress:
        history = train(
            model, dataset.x_train.to(dev), dataset.y_train.to(dev), cfg,
            x_test=dataset.x_test.to(dev), y_test=dataset.y_test.to(dev),
            progress=lambda s, t, log: progress(f"train {backbone}/{head}", s, t),
        )
    seconds = time.perf_counter() - start
    clean = float((batched_predict(model, dataset.x_test) == dataset.y_test).float().mean())
    meta = {
        "data": DataSpec(name=data, root=str(data_root) if data_root else None, resize=resize, seed=seed,
                         train_per_class=train_per_class).to_dict(),
        "train": cfg.to_dict(), "clean_accuracy": clean, "seconds": seconds,
        "history": [asdict(h) for h in history],
    }
    save_checkpoint(model, target, metadata=meta, overwrite=overwrite)
    if json_out:
        print_json({"checkpoint": str(target), "clean_accuracy": clean, "seconds": seconds,
                    "model": config.to_dict(), "history": meta["history"]})
        return
    for h in history:
        acc = f"{100 * h.test_accuracy:.1f}%" if h.test_accuracy is not None else "-"
        err.print(f"[dim]epoch {h.epoch:3d}  loss {h.loss:.4f}  train {100 * h.train_accuracy:.1f}%  test {acc}[/dim]")
    out.print(f"clean test accuracy {100 * clean:.2f}% in {seconds:.1f} s; checkpoint: [bold]{target}[/bold]")


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
