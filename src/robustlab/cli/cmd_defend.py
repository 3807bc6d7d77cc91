"""`robustlab defend NAME ...`: build a defended model from a trained one and save it as a checkpoint.

One subcommand per registered defense (`robustlab.defenses.DEFENSES`, plugins included), built
from its declaration: its `command` name, its parameters as options (a ``--flag/--no-flag``
switch for a boolean, a repeatable option for a list), its ``switches`` (``squeeze --detect``
builds ``squeeze-detector``), plus the options every defense shares (``--model``, ``--data``,
``--out``, ``--seed``, ...). Every parameter is checked before data is loaded or anything is
trained; an existing checkpoint at OUT is not overwritten without ``--overwrite``. The build goes
through `robustlab.defenses.build_defense`, so the CLI, experiment files and Python share it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
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
from robustlab.defenses import DEFENSES, Defense, Param, build_defense, check_defense_params
from robustlab.defenses.base import defense_label
from robustlab.evaluate.defended import defense_fit_warning
from robustlab.models import Classifier
from robustlab.store.checkpoints import (
    check_checkpoint_target,
    checkpoint_dir,
    load_checkpoint,
    read_checkpoint_config,
    save_checkpoint,
)

MODEL_OPT = typer.Option(..., "--model", help="Checkpoint of a trained classifier.")
DATA_OPT = typer.Option(None, "--data", help="Data set (default: the one the checkpoint was trained on).")
ROOT_OPT = typer.Option(None, "--data-root", help=DATA_ROOT_HELP)
RESIZE_OPT = typer.Option(None, "--resize", help="Resize images to SIZE x SIZE (default: as trained).")
OUT_OPT = typer.Option(..., "--out", help="Directory for the defended checkpoint.")
OVERWRITE_OPT = typer.Option(False, "--overwrite", help=OVERWRITE_HELP)
DEVICE_OPT = typer.Option(None, "--device", help=DEVICE_HELP)
JSON_OPT = typer.Option(False, "--json", help=JSON_HELP)
SEED_OPT = typer.Option(0, "--seed", help=SEED_HELP)
SHARED_HELP = {"batch_size": TRAIN_BATCH_HELP}
"""The help of a parameter that means the same on every command, when a defense gives none."""


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
    defense: Defense, params: dict[str, Any], model_path: Path, data, data_root, resize, out_dir: Path,
    overwrite: bool, seed: int, device, json_out: bool,
) -> None:
    """Check, load, build through `build_defense`, measure on the test split, save."""
    key = check_defense_params(defense.name, **params)
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
    if defense.measure is not None:
        meta["test_accuracy"] = defense.measure(model, base, x_te, y_te)
    save_checkpoint(model, out_dir, metadata=meta, overwrite=overwrite)
    companions = defense.companions(model) if defense.companions is not None else {}
    for name, companion in companions.items():
        save_checkpoint(companion, out_dir / name, metadata={
            "data": data_meta, "note": f"{name} of the {key} defense in the parent folder"})
    label = defense_label(model.defense_spec())
    _warn(label, warning)
    if json_out:
        print_json({"checkpoint": str(out_dir), **{n: str(out_dir / n) for n in companions}, **meta})
        return
    for name, acc in meta.get("test_accuracy", {}).items():
        out.print(f"{name:22s} test accuracy {100 * acc:6.2f}%")
    also = "".join(f"; {n}: {out_dir / n}" for n in companions)
    out.print(
        f"{label}: clean test accuracy {100 * test['accuracy']:.2f}% (undefended {100 * test['base_accuracy']:.2f}%, "
        f"n = {len(y_te)}), rejected {100 * test['rejected']:.2f}% of clean test images; built in "
        f"{built.info['seconds']:.1f} s; checkpoint: [bold]{out_dir}[/bold]{also}"
    )


def _warn(label: str, warning: str | None) -> None:
    """The defense-fit warning, one loud line on stderr (the checkpoint is kept: `evaluate` and
    the report carry the warning from its metadata)."""
    if warning:
        err.print(f"[bold red]warning: the defense did not fit:[/bold red] {label}: {warning}", soft_wrap=True)


COMMON = ("model_path", "data", "data_root", "resize", "out_dir", "seed", "overwrite", "device", "json_out")


def _common_options() -> list[inspect.Parameter]:
    options = {
        "model_path": (Path, MODEL_OPT), "data": (str, DATA_OPT), "data_root": (Path, ROOT_OPT),
        "resize": (int, RESIZE_OPT), "out_dir": (Path, OUT_OPT), "seed": (int, SEED_OPT),
        "overwrite": (bool, OVERWRITE_OPT), "device": (str, DEVICE_OPT), "json_out": (bool, JSON_OPT),
    }
    return [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
            for name, (kind, option) in options.items()]


def _option(p: Param) -> inspect.Parameter:
    """The typer option of a defense parameter: list -> repeatable text, parsed or of another type
    -> text (unset: the defense's default), bool -> --name/--no-name, else the default's type."""
    flag = "--" + p.name.replace("_", "-")
    flags = p.flags or (flag,)
    help_text = p.help or SHARED_HELP.get(p.name, "")
    if p.parse is not None or p.repeatable or not isinstance(p.default, bool | int | float | str):
        kind: Any = list[str] if p.repeatable and p.parse is None else str
        option = typer.Option(None, *flags, help=help_text, show_default=False)
    elif isinstance(p.default, bool):
        kind, option = bool, typer.Option(p.default, f"{flags[0]}/--no-{flags[0][2:]}", *flags[1:], help=help_text)
    else:
        kind, option = type(p.default), typer.Option(p.default, *flags, help=help_text)
    return inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)


def _command(defense: Defense) -> Callable[..., None]:
    """The `defend` subcommand of `defense`: its parameters (and those of the defenses its switches
    build) as options, then `_defend`."""
    variants = {defense.name: defense, **{flag: DEFENSES.get(name) for flag, name in defense.switches.items()}}
    params: dict[str, Param] = {}
    for variant in variants.values():
        for p in variant.params():
            if p.name not in COMMON:
                params.setdefault(p.name, p)

    def run(**kwargs: Any) -> None:
        common = {name: kwargs.pop(name) for name in COMMON}
        chosen = defense
        for flag in defense.switches:
            if kwargs.pop(flag):
                chosen = variants[flag]
        given: dict[str, Any] = {}
        for p in chosen.params():
            if p.name == "seed":
                given["seed"] = common["seed"]
            elif kwargs.get(p.name) not in (None, [], ()):
                value = kwargs[p.name]
                given[p.name] = p.parse(value) if p.parse is not None else value
        _defend(chosen, given, common["model_path"], common["data"], common["data_root"], common["resize"],
                common["out_dir"], common["overwrite"], common["seed"], common["device"], common["json_out"])

    switches = [inspect.Parameter(flag, inspect.Parameter.KEYWORD_ONLY, annotation=bool, default=typer.Option(
        False, "--" + flag.replace("_", "-"), help=f"Build {name} instead: {DEFENSES.get(name).summary}"))
        for flag, name in defense.switches.items()]
    run.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [*_common_options(), *switches, *(_option(p) for p in params.values())])
    run.__doc__ = defense.summary
    run.__name__ = f"defend_{defense.name}"
    return run


def defend_app() -> typer.Typer:
    """`robustlab defend`: one subcommand per registered defense (its `command` or its name)."""
    app = typer.Typer(help="Build a defended model from a trained one.", no_args_is_help=True, cls=Group)
    for _, defense in DEFENSES.items():
        app.command(defense.command or defense.name)(_command(defense))
    return app


def register(app: typer.Typer) -> None:
    app.add_typer(defend_app(), name="defend")
