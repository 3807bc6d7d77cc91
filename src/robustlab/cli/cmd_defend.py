"""`robustlab defend ...`: build a defended model from a trained one and save it as a checkpoint.

- ``svdd``: M-SVDD-D (paper 001); W~-LC is saved beside it under OUT/linear;
- ``distill``: defensive distillation at temperature T (paper 002);
- ``squeeze``: feature squeezing as an input transform, or with ``--detect`` as Xu et al.'s
  detector with a threshold at ``--fpr`` on held-out clean training images;
- ``magnet``: MagNet's denoising autoencoders as detectors and reformer.

Every parameter is checked before data is loaded or anything is trained; an existing
checkpoint at OUT is not overwritten without ``--overwrite``. The build goes through
`robustlab.defenses.build_defense`, so the CLI, experiment files and Python share it.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from robustlab.cli.console import err, out, print_json
from robustlab.cli.options import DATA_ROOT_HELP, DEVICE_HELP, JSON_HELP, OVERWRITE_HELP, SEED_HELP, TRAIN_BATCH_HELP
from robustlab.cli.vocabulary import Group
from robustlab.core.contract import REJECT, batched_predict
from robustlab.core.errors import CheckpointError, ConfigError
from robustlab.core.runtime import pick_device, seed_everything
from robustlab.data.spec import DataSpec, trained_on
from robustlab.data.splits import stratified_split
from robustlab.defenses import build_defense, check_defense_params
from robustlab.defenses.base import defense_label
from robustlab.defenses.svdd import MSVDDConfig, SVDDTrainConfig, build_msvdd
from robustlab.evaluate.defended import defense_fit_warning
from robustlab.models import Classifier
from robustlab.store.checkpoints import (
    check_checkpoint_target,
    checkpoint_dir,
    load_checkpoint,
    read_checkpoint_config,
    save_checkpoint,
)
from robustlab.train import TrainConfig

defend_app = typer.Typer(help="Build a defended model from a trained one.", no_args_is_help=True, cls=Group)

MODEL_OPT = typer.Option(..., "--model", help="Checkpoint of a trained classifier.")
DATA_OPT = typer.Option(None, "--data", help="Data set (default: the one the checkpoint was trained on).")
ROOT_OPT = typer.Option(None, "--data-root", help=DATA_ROOT_HELP)
RESIZE_OPT = typer.Option(None, "--resize", help="Resize images to SIZE x SIZE (default: as trained).")
OUT_OPT = typer.Option(..., "--out", help="Directory for the defended checkpoint.")
OVERWRITE_OPT = typer.Option(False, "--overwrite", help=OVERWRITE_HELP)
DEVICE_OPT = typer.Option(None, "--device", help=DEVICE_HELP)
JSON_OPT = typer.Option(False, "--json", help=JSON_HELP)
SEED_OPT = typer.Option(0, "--seed", help=SEED_HELP)


def _accuracy(model, x, y) -> float:
    return float((batched_predict(model, x) == y).float().mean()) if len(y) else 0.0


def _check_out(out_dir: Path, overwrite: bool, model_path: Path) -> None:
    """Refuse, before any work, an --out that is the input checkpoint, a file, a foreign non-empty
    folder, or an existing checkpoint without --overwrite."""
    if checkpoint_dir(model_path).resolve() == out_dir.resolve():
        raise ConfigError(f"--out {out_dir} is the input checkpoint; choose another directory")
    check_checkpoint_target(out_dir, overwrite=overwrite)


def _load_base(model_path: Path, data, data_root, resize, seed, dev):
    """(base classifier, dataset, the checkpoint's data metadata) for a defend command."""
    doc = read_checkpoint_config(model_path)
    if doc.get("defense"):
        raise ConfigError(f"{model_path} is already a defended model ({doc['defense'].get('name')})")
    base = load_checkpoint(model_path, dev)
    if not isinstance(base, Classifier):
        raise CheckpointError(f"{model_path}: a defense wraps a robustlab Classifier")
    trained = trained_on(doc, str(model_path))
    if trained is None and not data:
        raise ConfigError("the checkpoint does not say which data it was trained on: give --data")
    spec = (trained or DataSpec(name=data, seed=seed)).override(data, str(data_root) if data_root else None)
    if resize is not None:
        spec = replace(spec, resize=resize)
    data = spec.name
    dataset = spec.load()
    if dataset.input_shape != base.input_shape or dataset.num_classes != base.num_classes:
        raise ConfigError(
            f"{data} gives {dataset.num_classes} classes of {dataset.input_shape}, the model "
            f"expects {base.num_classes} of {base.input_shape} (check --data/--resize)"
        )
    return base, dataset, spec.to_dict()


def _defend(
    name: str, params: dict[str, Any], model_path: Path, data, data_root, resize, out_dir: Path,
    overwrite: bool, seed: int, device, json_out: bool,
) -> None:
    """Check, load, build through `build_defense`, measure on the test split, save."""
    key = check_defense_params(name, **params)
    _check_out(out_dir, overwrite, model_path)
    dev = pick_device(device)
    base, dataset, data_meta = _load_base(model_path, data, data_root, resize, seed, dev)
    seed_everything(seed)
    built = build_defense(key, base, dataset, **params)
    model = built.model
    x_te, y_te = dataset.x_test, dataset.y_test
    pred = batched_predict(model, x_te)
    test = {
        "base_accuracy": _accuracy(base, x_te, y_te),
        "accuracy": float((pred == y_te).float().mean()),
        "rejected": float((pred == REJECT).float().mean()),
    }
    warning = defense_fit_warning(test["accuracy"], test["base_accuracy"], dataset.num_classes)
    meta = {"data": data_meta, "defense_build": built.info,
            "source_checkpoint": str(checkpoint_dir(model_path).resolve()), "test": test,
            "clean_accuracy": test["accuracy"], "base_clean_accuracy": test["base_accuracy"],
            "n_test": len(y_te), "warning": warning}
    save_checkpoint(model, out_dir, metadata=meta, overwrite=overwrite)
    label = defense_label(model.defense_spec())
    _warn(label, warning)
    if json_out:
        print_json({"checkpoint": str(out_dir), **meta})
        return
    out.print(
        f"{label}: clean test accuracy {100 * test['accuracy']:.2f}% (undefended {100 * test['base_accuracy']:.2f}%, "
        f"n = {len(y_te)}), rejected {100 * test['rejected']:.2f}% of clean test images; built in "
        f"{built.info['seconds']:.1f} s; checkpoint: [bold]{out_dir}[/bold]"
    )


def _warn(label: str, warning: str | None) -> None:
    """The defense-fit warning, one loud line on stderr (the checkpoint is kept: `evaluate` and
    the report carry the warning from its metadata)."""
    if warning:
        err.print(f"[bold red]warning: the defense did not fit:[/bold red] {label}: {warning}", soft_wrap=True)


@defend_app.command("distill")
def distill_cmd(
    model_path: Path = MODEL_OPT,
    data: str = DATA_OPT,
    data_root: Path = ROOT_OPT,
    resize: int = RESIZE_OPT,
    out_dir: Path = OUT_OPT,
    temperature: float = typer.Option(100.0, "--temperature", "-T", help="T > 0 (Papernot et al.'s 100)."),
    teacher: str = typer.Option("retrain", "--teacher", help="retrain (a teacher trained at T) or base."),
    init: str = typer.Option("base", "--init", help="base: warm start from MODEL with its linear layer times T "
                             "(few epochs suffice), or scratch (Papernot et al.; needs many epochs at large T)."),
    epochs: int = typer.Option(10, "--epochs", help="Epochs of the teacher and of the student."),
    lr: float = typer.Option(1e-3, "--lr"),
    optimizer: str = typer.Option("adam", "--optimizer", help="adam or sgd."),
    batch_size: int = typer.Option(128, "--batch-size", min=1, help=TRAIN_BATCH_HELP),
    seed: int = SEED_OPT,
    overwrite: bool = OVERWRITE_OPT,
    device: str = DEVICE_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Defensive distillation: a student trained on the teacher's softmax at T, deployed at T = 1."""
    params = {"temperature": temperature, "teacher": teacher, "init": init, "epochs": epochs, "lr": lr,
              "optimizer": optimizer, "batch_size": batch_size, "seed": seed}
    _defend("distillation", params, model_path, data, data_root, resize, out_dir, overwrite, seed, device, json_out)


@defend_app.command("squeeze")
def squeeze_cmd(
    model_path: Path = MODEL_OPT,
    data: str = DATA_OPT,
    data_root: Path = ROOT_OPT,
    resize: int = RESIZE_OPT,
    out_dir: Path = OUT_OPT,
    squeezer: list[str] = typer.Option(
        None, "--squeezer", "-s",
        help="bits:B, hsv:B (paper 002's colour bits; hsv:1 is Algorithm 2 as printed), median:K, mean:K "
        "(mean:3 is Algorithm 3). Repeatable. Default: bits:4 (transform), bits:4 + median:2 (--detect).",
    ),
    detect: bool = typer.Option(False, "--detect", help="Xu et al.'s detector instead of an input transform."),
    fpr: float = typer.Option(0.05, "--fpr", help="Detector false-positive rate on clean validation data."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Training share held out for the threshold."),
    seed: int = SEED_OPT,
    overwrite: bool = OVERWRITE_OPT,
    device: str = DEVICE_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Feature squeezing: the classifier sees squeezed inputs, or (--detect) rejects inputs whose
    prediction moves by more than a threshold under squeezing."""
    params: dict[str, Any] = {}
    if squeezer:
        params["squeezers"] = list(squeezer)
    if detect:
        params.update({"fpr": fpr, "val_fraction": val_fraction, "seed": seed})
    name = "squeeze-detector" if detect else "squeeze"
    _defend(name, params, model_path, data, data_root, resize, out_dir, overwrite, seed, device, json_out)


@defend_app.command("magnet")
def magnet_cmd(
    model_path: Path = MODEL_OPT,
    data: str = DATA_OPT,
    data_root: Path = ROOT_OPT,
    resize: int = RESIZE_OPT,
    out_dir: Path = OUT_OPT,
    structure: str = typer.Option("3,pool,3", "--structure", help="Conv widths and 'pool', comma-separated."),
    n_pack: int = typer.Option(1, "--n-pack", help="Autoencoders in the pack (> 1: one drawn at random)."),
    detector: list[str] = typer.Option(None, "--detector", help="recon:1, recon:2, jsd:T (repeatable). "
                                       "Default: recon:1 and jsd:10."),
    no_reformer: bool = typer.Option(False, "--no-reformer", help="Classify x itself, not ae(x)."),
    noise: float = typer.Option(0.1, "--noise", help="Std of the training noise (pixel units)."),
    alpha: float = typer.Option(0.2, "--alpha", help="Pack diversity weight (Appendix A)."),
    epochs: int = typer.Option(250, "--epochs", help="Autoencoder epochs (Table 4.7: 250)."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help=TRAIN_BATCH_HELP),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate."),
    fpr: float = typer.Option(0.05, "--fpr", help="Total false-positive rate of the detectors."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Training share held out for the threshold."),
    seed: int = SEED_OPT,
    overwrite: bool = OVERWRITE_OPT,
    device: str = DEVICE_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """MagNet: denoising autoencoders as detectors (reconstruction error, JSD) and reformer."""
    items: list[int | str] = [int(t) if t.strip().isdigit() else t.strip() for t in structure.split(",")]
    params: dict[str, Any] = {"structure": items, "n_pack": n_pack, "reformer": not no_reformer,
                              "noise": noise, "alpha": alpha, "epochs": epochs, "batch_size": batch_size,
                              "lr": lr, "fpr": fpr, "val_fraction": val_fraction, "seed": seed}
    if detector:
        params["detectors"] = list(detector)
    _defend("magnet", params, model_path, data, data_root, resize, out_dir, overwrite, seed, device, json_out)


@defend_app.command("svdd")
def svdd_cmd(
    model_path: Path = typer.Option(..., "--model", help="Checkpoint of a trained classifier (linear head)."),
    data: str = typer.Option(
        None, "--data", help="Data set (default: the one the checkpoint was trained on)."
    ),
    data_root: Path = ROOT_OPT,
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
    seed: int = SEED_OPT,
    overwrite: bool = OVERWRITE_OPT,
    device: str = DEVICE_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Replace the linear head of MODEL by one SVDD per class plus an adversarial class (M-SVDD-D)."""
    _check_out(out_dir, overwrite, model_path)
    dev = pick_device(device)
    base, dataset, data_meta = _load_base(model_path, data, data_root, resize, seed, dev)
    if base.config.head != "softmax":
        raise CheckpointError(f"{model_path}: M-SVDD replaces a linear (softmax) head; got {base.config.head}")
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
    clean = _accuracy(model, x_te, y_te)
    warning = defense_fit_warning(clean, table1["W-LC"], dataset.num_classes)
    meta = {
        "data": data_meta,
        "defense_build": cfg.to_dict(),
        "source_checkpoint": str(checkpoint_dir(model_path).resolve()),
        "clean_accuracy": clean,
        "base_clean_accuracy": table1["W-LC"],
        "n_test": len(y_te),
        "warning": warning,
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
    _warn(defense_label(model.defense_spec()), warning)
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
