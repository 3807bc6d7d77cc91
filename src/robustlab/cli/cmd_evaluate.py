"""`robustlab evaluate`: attack a checkpoint (or your own module) over an eps grid; results and the
report into a run directory. A one-model experiment (`robustlab.experiment.evaluation`): the same
checks, driver, labels and report as `run`; everything is validated before anything is written."""

from __future__ import annotations

from dataclasses import replace
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
    print_training_warnings,
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
from robustlab.core.environment import command_line
from robustlab.core.errors import ConfigError, InputError, RobustlabError
from robustlab.core.runtime import pick_device
from robustlab.data.spec import DataSpec, trained_on
from robustlab.evaluate import DEFAULT_ATTACKS, AttackSpec, eval_set
from robustlab.evaluate.defended import less_robust_text
from robustlab.evaluate.masking import masking_verdicts
from robustlab.evaluate.selftests import SELFTEST_SAMPLES
from robustlab.experiment.estimate import describe_plan, estimate
from robustlab.experiment.evaluation import EvaluationResult, evaluation_result, one_model_spec, outcome_model
from robustlab.experiment.outcome import GridOutcome
from robustlab.experiment.runner import execute_grid, prepare_grid
from robustlab.experiment.spec_parts import ExecutorSpec, GivenModel
from robustlab.experiment.tasks import dataset_for
from robustlab.models import zoo
from robustlab.models.wrap import load_factory
from robustlab.report import write_report
from robustlab.report.headline import headline_rows, shows_identification, threat_model
from robustlab.store.checkpoints import checkpoint_dir, read_checkpoint_config

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
    untrained: bool = typer.Option(False, "--untrained", help="Evaluate --module as its factory builds it, "
                                   "without --weights (randomly initialised unless the factory loads weights)."),
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
    executor: str = typer.Option(None, "--executor", help="local (in-process, the default) or ray: where the "
                                 "cells run (the same executors as `run`)."),
    threads: int = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
    no_self_test: bool = typer.Option(False, "--no-self-test", help="Skip the binarization self-test of the "
                                      f"attacks (default: on the first {SELFTEST_SAMPLES} samples at each eps > 0)."),
) -> None:
    """Attack MODEL (a checkpoint, or --module your own nn.Module with --weights) with each attack at
    each eps; print the table (worst case per sample included) and write the report.

    Everything is checked before anything is written; results already in the run directory
    for the same model, data, samples, attack and budget are reused, never mixed. The
    evaluation is a one-model experiment: the same driver, labels and report as `run`.
    """
    if sum(x is not None for x in (model_path, module, zoo_arch)) != 1:
        raise ConfigError("give one of --model CHECKPOINT, --module pkg.mod:factory or --zoo-arch NAME --weights FILE")
    if zoo_arch is not None and weights is None:
        raise ConfigError("--zoo-arch needs --weights (a .safetensors file)")
    if untrained and (module is None or weights is not None):
        raise ConfigError("--untrained goes with --module and no --weights")
    if module is not None and weights is None and not untrained:
        raise ConfigError(f"--module {module} has no --weights: it would evaluate the factory's network as built "
                          "(random weights unless the factory loads its own); give --weights FILE.safetensors, "
                          "or --untrained to evaluate it as it is")
    if zoo_arch is not None:
        zoo.zoo_arch(zoo_arch)  # an unknown name is refused before any data is loaded
    data = data or ("cifar10" if zoo_arch is not None else None)
    shared = {k: v for k, v in {"steps": steps, "norm": norm, "restarts": restarts}.items() if v is not None}
    shared.update(parse_pairs(param, "--param"))
    specs = attack_specs(list(attack or DEFAULT_ATTACKS), shared, seed)
    grid = list(eps) if eps else list(DEFAULT_EPS)
    root = str(data_root) if data_root else None
    if module is not None or zoo_arch is not None:
        if data is None:
            raise ConfigError("--module needs --data (the data set to evaluate on)")
        data_spec = DataSpec(name=data, root=root, n_eval=n_eval)
        dataset = dataset_for(data_spec)
        load = partial(zoo.load_zoo_model, zoo_arch) if zoo_arch is not None else partial(load_factory, module)
        model, _ = load(weights, num_classes=dataset.num_classes, input_shape=dataset.input_shape,
                        mean=mean or None, std=std or None, device=pick_device(device))
        source = f"--module {module}" if module else f"--zoo-arch {zoo_arch}"
        name = zoo_arch or module.rsplit(":", 1)[1]
        config = getattr(model, "config", None)
        info: dict[str, Any] = {"config": config.to_dict() if config is not None else {"module": module},
                                "module": module, "weights": str(weights), "n_test": len(dataset.y_test),
                                "clean_accuracy": _module_accuracy(model, source, dataset.x_test, dataset.y_test)}
        if zoo_arch is not None:
            info["zoo_arch"] = zoo_arch
        given = GivenModel("zoo" if zoo_arch else "module", path=str(weights) if weights else None,
                           name=zoo_arch or module, mean=tuple(mean) if mean else None,
                           std=tuple(std) if std else None, model=model, info=info)
    else:
        if weights is not None or mean or std:
            raise ConfigError("--weights, --mean and --std go with --module or --zoo-arch, not --model")
        ckpt = checkpoint_dir(model_path)
        doc = read_checkpoint_config(ckpt)
        trained = trained_on(doc, str(ckpt))
        if trained is None and not data:
            raise ConfigError("the checkpoint does not say what data it was trained on: pass --data")
        data_spec = replace((trained or DataSpec(name=data)).override(data, root), n_eval=n_eval)
        name = ckpt.resolve().name
        given = GivenModel("checkpoint", path=str(ckpt))
    samples = eval_set(dataset_for(data_spec), n_eval, seed=seed)  # --seed picks the --n-eval subset
    spec = one_model_spec(name, given, data_spec, specs, grid, batch_size=batch_size,
                          self_test=0 if no_self_test else SELFTEST_SAMPLES, executor=ExecutorSpec(executor or "local"))
    run_dir = run_dir or Path("runs") / name
    from robustlab.cli.app import STATE

    on_interrupt(f"every finished cell is kept in {run_dir}; run the same command again to resume "
                 "(stored cells are not recomputed)")
    # every check, before anything is written
    prepared = prepare_grid(spec, run_dir, overwrite=overwrite, samples={data_spec.key: samples})
    plan = describe_plan(estimate(prepared))
    done: dict[str, Any] = {}

    def finish(outcome: GridOutcome) -> None:  # the report, and what is printed, from the store just written
        done["paths"] = write_report(run_dir)
        if outcome.keys:
            done["result"] = evaluation_result(run_dir, *outcome_model(outcome))

    with progress_bar(not json_out) as progress:
        outcome = execute_grid(prepared, device=device, progress=progress, debug=STATE["debug"], threads=threads,
                               command=command_line(STATE.get("argv")), index=False,
                               on_start=lambda: err.print(plan, markup=False), finish=finish)
    paths = done["paths"]
    failures = [f.line() for f in outcome.failures]
    if "result" not in done:  # the model was never ready: nothing to show
        for line in failures:
            err.print(f"failed: {line}", markup=False)
        raise typer.Exit(1)
    result: EvaluationResult = done["result"]
    key, info = result.model, result.info
    print_training_warnings({key: info})
    for c in result.base:
        if c["less_robust"]:
            err.print(f"[bold yellow]warning:[/bold yellow] {name}: {less_robust_text(c)}", soft_wrap=True)
    threat = threat_model(result.rows, headline_rows(result.rows, {key: info}))
    shown = shows_identification(info, data_spec.name)  # FMR / FNMR only where identification means something
    if json_out:
        print_json({"model": key, "run_dir": str(run_dir), "report": str(paths["html"]),
                    "training": info.get("training"), "rows": result.rows,
                    "threat_model": threat, "masking": result.masking,
                    "masking_verdicts": masking_verdicts(result.masking), "identification": result.identification,
                    "identification_applies": shown, "clean_accuracy": info.get("clean_accuracy"),
                    "base_clean_accuracy": info.get("base_clean_accuracy"), "warning": result.warning,
                    "base": result.base, "selftests": result.selftests, "counts": outcome.counts(),
                    "failures": failures})
    else:
        out.print(threat["text"], soft_wrap=True)
        if threat.get("single_attack_text"):
            out.print(f"[bold yellow]{threat['single_attack_text']}[/bold yellow]", soft_wrap=True)
        print_results(result.rows, {key: name})
        if shown:
            print_identification({key: result.identification}, {key: name})
        print_masking(result.masking)
        for test in result.selftests:
            out.print(f"Self-test (binarization): {test['sentence']}")
        out.print(f"Results in [bold]{run_dir}[/bold]; report: [bold]{paths['html'].resolve()}[/bold]")
    for line in failures:
        err.print(f"failed: {line}", markup=False)
    if failures:
        raise typer.Exit(1)


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
