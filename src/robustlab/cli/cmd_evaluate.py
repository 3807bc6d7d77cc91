"""`robustlab evaluate`: attack a checkpoint (or your own module) over an eps grid; results into a
run directory. Everything is validated before anything is written (see `robustlab.evaluate.Evaluation`)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch
import typer

from robustlab.attacks.registry import attack_parameters, get_attack_class
from robustlab.cli.app import on_interrupt
from robustlab.cli.console import (
    err,
    out,
    print_identification,
    print_json,
    print_masking,
    print_results,
    progress_bar,
)
from robustlab.cli.options import (
    BATCH_HELP,
    BATCH_SIZE,
    DATA_ROOT_HELP,
    DEVICE_HELP,
    JSON_HELP,
    OVERWRITE_HELP,
    PARAM_HELP,
    SEED_HELP,
    THREADS_HELP,
    eps_value,
    parse_pairs,
)
from robustlab.core.contract import RobustModel, batched_predict
from robustlab.core.digest import model_digest
from robustlab.core.environment import command_line
from robustlab.core.errors import ConfigError, InputError, RobustlabError
from robustlab.core.runtime import pick_device
from robustlab.data.spec import DataSpec, trained_on
from robustlab.defenses.base import defense_label
from robustlab.evaluate import DEFAULT_ATTACKS, AttackSpec, Evaluation, eval_set
from robustlab.evaluate.defended import less_robust_text
from robustlab.evaluate.masking import masking_verdicts
from robustlab.evaluate.selftests import SELFTEST_SAMPLES
from robustlab.models import zoo
from robustlab.models.wrap import load_factory
from robustlab.report.headline import headline_rows, shows_identification, threat_model
from robustlab.store.checkpoints import checkpoint_dir, load_checkpoint, read_checkpoint_config
from robustlab.train.adversarial import recipe_label

DEFAULT_EPS = (0.0, 0.05, 0.1, 0.2, 0.5)
"""Linf budgets; 0.5 lets the "accuracy reaches chance at a huge budget" check run."""
_EPS_TEXT = " ".join(f"{e:g}" for e in DEFAULT_EPS)


def attack_specs(names: list[str], shared: dict[str, Any], seed: int = 0) -> list[AttackSpec]:
    """One spec per attack name; each shared parameter goes to the attacks that accept it, and
    `seed` (--seed; 0, the attacks' default, is left out of their keys) to those that take one."""
    used: set[str] = set()
    specs = []
    for name in names:
        get_attack_class(name)
        accepted = attack_parameters(name)
        params = {k: v for k, v in shared.items() if k in accepted}
        if seed and "seed" in accepted:
            params.setdefault("seed", seed)
        used |= set(params)
        specs.append(AttackSpec(name, params))
    unused = set(shared) - used
    if unused:
        raise ConfigError(f"no attack among {names} takes {sorted(unused)}")
    return specs


def evaluate_cmd(
    model_path: Path = typer.Option(
        None, "--model", help="Checkpoint directory (or its config.json / weights file), or use --module."
    ),
    module: str = typer.Option(None, "--module", help="Your own model: pkg.mod:factory or file.py:factory, "
                               "a no-argument callable returning an nn.Module (logits out)."),
    zoo_arch: str = typer.Option(None, "--zoo-arch", help="A RobustBench zoo architecture (wrn-28-10, dm-wrn-70-16, "
                                 "preact-resnet-18, resnet-50, ...) for --weights; --data defaults to cifar10."),
    weights: Path = typer.Option(None, "--weights", help="safetensors weights for --module or --zoo-arch (a .pt: "
                                 "`robustlab convert` it first)."),
    mean: list[float] = typer.Option(None, "--mean", help="Per-channel mean for --module's (or --zoo-arch's) "
                                     "input (repeatable)."),
    std: list[float] = typer.Option(None, "--std", help="Per-channel std for --module's (or --zoo-arch's) "
                                    "input (repeatable)."),
    data: str = typer.Option(None, "--data", help="Data set (default: the one the model was trained on)."),
    data_root: Path = typer.Option(None, "--data-root", help=DATA_ROOT_HELP),
    attack: list[str] = typer.Option(
        None, "--attack", help=f"Attack name (repeatable). Default: {' + '.join(DEFAULT_ATTACKS)}."
    ),
    eps: list[float] = typer.Option(None, "--eps", parser=eps_value, metavar="<eps>",
                                    help=f"Budget, e.g. 0.1 or 8/255 (repeatable). Default: {_EPS_TEXT}."),
    steps: int = typer.Option(None, "--steps", help="Iterations, for attacks that take them."),
    norm: str = typer.Option(None, "--norm", help="linf or l2, for attacks that take it."),
    restarts: int = typer.Option(None, "--restarts"),
    param: list[str] = typer.Option(None, "--param", "-p", help="For the attacks that take KEY. " + PARAM_HELP),
    n_eval: int = typer.Option(
        None, "--n-eval", min=1, help="Attack a stratified subset of this many test images."
    ),
    run_dir: Path = typer.Option(None, "--out", help="Run directory (default runs/<checkpoint>)."),
    batch_size: int = typer.Option(BATCH_SIZE, "--batch-size", min=1, help=BATCH_HELP),
    seed: int = typer.Option(0, "--seed", help=SEED_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    device: str = typer.Option(None, "--device", help=DEVICE_HELP),
    threads: int = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
    no_self_test: bool = typer.Option(False, "--no-self-test", help="Skip the binarization self-test of the "
                                      f"attacks (default: on the first {SELFTEST_SAMPLES} samples at each eps > 0)."),
) -> None:
    """Attack MODEL (a checkpoint, or --module your own nn.Module with --weights) with each attack at
    each eps; print the table (worst case per sample included).

    Everything is checked before anything is written; results already in the run directory
    for the same model, data, samples, attack and budget are reused, never mixed.
    """
    dev = pick_device(device)
    if sum(x is not None for x in (model_path, module, zoo_arch)) != 1:
        raise ConfigError("give one of --model CHECKPOINT, --module pkg.mod:factory or --zoo-arch NAME --weights FILE")
    if zoo_arch is not None and weights is None:
        raise ConfigError("--zoo-arch needs --weights (a .safetensors file)")
    if zoo_arch is not None:
        zoo.zoo_arch(zoo_arch)  # an unknown name is refused before any data is loaded
    data = data or ("cifar10" if zoo_arch is not None else None)
    shared = {k: v for k, v in {"steps": steps, "norm": norm, "restarts": restarts}.items() if v is not None}
    shared.update(parse_pairs(param, "--param"))
    specs = attack_specs(list(attack or DEFAULT_ATTACKS), shared, seed)
    grid = list(eps) if eps else list(DEFAULT_EPS)
    if module is not None or zoo_arch is not None:
        if data is None:
            raise ConfigError("--module needs --data (the data set to evaluate on)")
        dataset = DataSpec(name=data, root=str(data_root) if data_root else None).load()
        samples = eval_set(dataset, n_eval, seed=seed)
        load = partial(zoo.load_zoo_model, zoo_arch) if zoo_arch is not None else partial(load_factory, module)
        model, key = load(weights, num_classes=dataset.num_classes, input_shape=dataset.input_shape,
                          mean=mean or None, std=std or None, device=dev)
        name = key.split(":")[0]
        clean = _module_accuracy(model, f"--module {module}" if module else f"--zoo-arch {zoo_arch}",
                                 dataset.x_test, dataset.y_test)
        config = getattr(model, "config", None)
        info: dict[str, Any] = {"id": name, "config": config.to_dict() if config is not None else {"module": module},
                                "module": module, "weights": str(weights), "clean_accuracy": clean}
        if zoo_arch is not None:
            info["zoo_arch"] = zoo_arch
        defense = "none"
    else:
        if weights is not None or mean or std:
            raise ConfigError("--weights, --mean and --std go with --module or --zoo-arch, not --model")
        ckpt = checkpoint_dir(model_path)
        doc = read_checkpoint_config(ckpt)
        trained = trained_on(doc, str(ckpt))
        if trained is None and not data:
            raise ConfigError("the checkpoint does not say what data it was trained on: pass --data")
        data_spec = (trained or DataSpec(name=data)).override(data, str(data_root) if data_root else None)
        samples = eval_set(data_spec.load(), n_eval, seed=seed)
        defense = defense_label(doc.get("defense"))
        name = ckpt.resolve().name
        meta = doc.get("metadata") or {}
        info = {"id": name, "config": doc["model"], "defense": doc.get("defense"), "checkpoint": str(ckpt.resolve()),
                "clean_accuracy": meta.get("clean_accuracy"), "train": meta.get("train"),
                "training": recipe_label(meta.get("train")), "n_test": meta.get("n_test")}
        if doc.get("defense"):  # its base's clean accuracy and checkpoint, for the fit warning and the link
            info.update(defense_label=defense, base_checkpoint=meta.get("source_checkpoint"),
                        base_clean_accuracy=meta.get("base_clean_accuracy"), warning=meta.get("warning"))
        model = None
    run_dir = run_dir or Path("runs") / name
    from robustlab.cli.app import STATE

    evaluation = Evaluation(run_dir, samples, specs, grid, batch_size=batch_size, defense=defense,
                            overwrite=overwrite, threads=threads, command=command_line(STATE.get("argv")),
                            self_test=0 if no_self_test else SELFTEST_SAMPLES)
    on_interrupt(f"every finished cell is kept in {run_dir}; run the same command again to resume "
                 "(stored cells are not recomputed)")
    if model is None:
        model = load_checkpoint(ckpt, dev)
        key = f"{name}:{model_digest(model)[:10]}"
    evaluation.check_model(model)
    with progress_bar(not json_out) as progress:
        result = evaluation.run(model, key, info=info, progress=progress,
                                on_plan=lambda plan: err.print(plan.describe()))
    if result.warning:
        err.print(f"[bold red]warning: the defense did not fit:[/bold red] {name}: {result.warning}", soft_wrap=True)
    for c in result.base:
        if c["less_robust"]:
            err.print(f"[bold yellow]warning:[/bold yellow] {name}: {less_robust_text(c)}", soft_wrap=True)
    threat = threat_model(result.rows, headline_rows(result.rows, {key: info}))
    shown = shows_identification(info, samples.name)  # FMR / FNMR only where identification means something
    if json_out:
        print_json({"model": key, "run_dir": str(run_dir), "training": info.get("training"), "rows": result.rows,
                    "threat_model": threat, "masking": result.masking,
                    "masking_verdicts": masking_verdicts(result.masking), "identification": result.identification,
                    "identification_applies": shown, "clean_accuracy": info.get("clean_accuracy"),
                    "base_clean_accuracy": info.get("base_clean_accuracy"),
                    "warning": result.warning, "base": result.base, "selftests": result.selftests})
        return
    out.print(threat["text"], soft_wrap=True)
    if threat.get("single_attack_text"):
        out.print(f"[bold yellow]{threat['single_attack_text']}[/bold yellow]", soft_wrap=True)
    print_results(result.rows, {key: name})
    if shown:
        print_identification({key: result.identification}, {key: name})
    print_masking(result.masking)
    for test in result.selftests:
        out.print(f"Self-test (binarization): {test['sentence']}")
    out.print(f"Results in [bold]{run_dir}[/bold]; `robustlab report {run_dir}` writes the report.")


def _module_accuracy(model: RobustModel, source: str, x: torch.Tensor, y: torch.Tensor) -> float:
    """Clean accuracy of the user's module (`source`: the option that named it) on (x, y); a
    module that fails on these images is one line."""
    try:
        return float((batched_predict(model, x) == y).float().mean())
    except RobustlabError:
        raise
    except Exception as exc:  # the user's forward: a shape mismatch, a dtype, a bug of theirs
        text = " ".join(str(exc).split())[:300]
        raise InputError(f"{source}: the model fails on images of shape {tuple(x.shape[1:])} "
                         f"({type(exc).__name__}: {text})") from None


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
