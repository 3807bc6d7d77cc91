"""One vocabulary on the command line: every command's options, read from the click app, spell each
concept one way; `--json` is a flag; one batch default; every command that writes takes `--out`;
the old spellings still work with one deprecation line; `--version`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
import typer
from typer.testing import CliRunner

import robustlab
from robustlab.cli.app import _app, main
from robustlab.core.errors import ConfigError

# concept -> (its one spelling, spellings it must not have anywhere)
CONCEPTS = {
    "output": ("--out", {"--run-dir", "--output", "--output-dir", "--out-dir", "--dest", "--report-dir"}),
    "data folder": ("--data-root", {"--root", "--data-dir", "--data-path", "--dataset-root"}),
    "overwrite": ("--overwrite", {"--fresh", "--force", "--clean", "--replace"}),
    "key=value": ("--param", {"--attack-arg", "--adv-arg", "--backbone-arg", "--head-arg", "--objective-arg",
                              "--arg", "--set", "--kwarg", "--option"}),
    "seed": ("--seed", {"--random-seed", "--rng-seed"}),
    "batch": ("--batch-size", {"--batch", "--bs", "--eval-batch-size"}),
    "json": ("--json", {"--json-out", "--as-json", "--format-json"}),
    "device": ("--device", {"--gpu", "--cuda", "--cpu"}),
    "threads": ("--threads", {"--num-threads", "--torch-threads"}),
}

# Names any command may use for these concepts (the vocabulary), and each command's own options.
SHARED = {"--help", "--out", "--data", "--data-root", "--overwrite", "--param", "-p", "--seed", "--batch-size",
          "--json", "--device", "--threads", "--model", "--resize", "--epochs", "--lr", "--steps", "--eps",
          "--val-fraction", "--fpr", "--optimizer"}
OWN = {
    "": {"--debug", "--version", "-V", "--plugin"},
    "demo": set(),
    "train": {"--backbone", "--head", "--train-per-class", "--weight-decay", "--schedule", "--adv", "--adv-eps",
              "--adv-steps"},
    "evaluate": {"--module", "--zoo-arch", "--weights", "--mean", "--std", "--attack", "--norm", "--restarts",
                 "--n-eval", "--no-self-test", "--executor"},
    "report": {"--format"},
    "datasets": set(),
    "run": {"--executor", "--address", "--num-cpus", "--num-gpus", "--connect-timeout", "--max-trainings",
            "--max-cells", "--max-values", "--no-self-test", "--dry-run"},
    "anonymize": {"--k", "--similarity", "--targets", "--size-policy", "--report", "--tolerance", "--retries"},
    "convert": {"--key", "--strip"},
    "defend distill": {"--temperature", "-T", "--teacher", "--init", "--weight-decay"},
    "defend squeeze": {"--squeezer", "-s", "--detect"},
    "defend squeeze-detector": {"--squeezer", "-s"},
    "defend magnet": {"--structure", "--n-pack", "--activation", "--detector", "--reformer", "--no-reformer", "--noise",
                      "--alpha"},
    "defend svdd": {"--projections", "--positive-epochs", "--svdd-epochs", "--c-p", "--c-n", "--finetune-epochs",
                    "--finetune-lr", "--budget", "--beta", "--v-a", "--v-p"},
}
READS_ONLY = {"", "datasets"}  # every other command writes, so takes --out
NO_RANDOMNESS = {"", "datasets", "report", "convert", "run"}  # run: the seeds are the file's (`seeds:`)
TRAINING_BATCH = {"train", "defend distill", "defend magnet"}  # a recipe's hyperparameter, its own default


def commands() -> dict[str, Any]:
    """Command path ("" for the root, "defend svdd") -> click command, subcommands included."""
    found: dict[str, Any] = {}

    def walk(cmd: Any, path: str) -> None:
        found[path] = cmd
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(sub, f"{path} {name}".strip())

    walk(typer.main.get_command(_app()), "")
    return found


def options(cmd: Any) -> dict[str, Any]:
    """Visible option name -> its click parameter (every alias of it)."""
    return {name: p for p in cmd.params if p.param_type_name == "option" and not p.hidden
            for name in (*p.opts, *p.secondary_opts)}


def test_the_walk_sees_every_command():
    assert set(commands()) == set(OWN) | {"defend"}


@pytest.mark.parametrize("concept", sorted(CONCEPTS))
def test_one_spelling_per_concept(concept):
    allowed, forbidden = CONCEPTS[concept]
    for path, cmd in commands().items():
        bad = forbidden & set(options(cmd))
        assert not bad, f"`robustlab {path}` spells {concept} as {sorted(bad)}: use {allowed}"


def test_every_option_is_in_the_vocabulary():
    for path, cmd in commands().items():
        if path == "defend":
            continue
        unknown = set(options(cmd)) - SHARED - OWN[path]
        assert not unknown, (f"`robustlab {path}` has {sorted(unknown)}: a shared concept spelled anew? If it "
                             "is the command's own, add it to OWN here")


def test_key_value_is_param_everywhere():
    for path, cmd in commands().items():
        opts = options(cmd)
        assert not [o for o in opts if o.endswith(("-arg", "-args"))], path
        if "--param" in opts:
            assert opts["--param"] is opts["-p"] and opts["--param"].multiple, path


def test_json_is_a_plain_switch(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    for path, cmd in commands().items():
        if path in ("", "defend"):
            continue
        flag = options(cmd)["--json"]
        assert flag.is_flag and not flag.count and flag.default is False, path
        assert main([*path.split(), "--help"]) == 0
        lines = [line for line in capsys.readouterr().out.splitlines() if "--json" in line]
        assert lines and not any("<bool>" in line for line in lines), (path, lines)  # no value shown


def test_every_command_that_writes_has_out():
    for path, cmd in commands().items():
        if path not in READS_ONLY and path != "defend":
            assert "--out" in options(cmd), f"`robustlab {path}` writes but has no --out"


def test_seed_wherever_randomness_enters():
    seeds = {}
    for path, cmd in commands().items():
        if path in NO_RANDOMNESS or path == "defend":
            continue
        seed = options(cmd).get("--seed")
        assert seed is not None, f"`robustlab {path}` has no --seed"
        seeds[path] = (seed.default, seed.help)
    assert len(set(seeds.values())) == 1 and next(iter(seeds.values()))[0] == 0, seeds


def test_one_batch_default():
    run_only, training = {}, {}
    for path, cmd in commands().items():
        batch = options(cmd).get("--batch-size")
        if batch is not None:
            (training if path in TRAINING_BATCH else run_only)[path] = (batch.default, batch.help)
    assert set(run_only) == {"evaluate", "anonymize"} and set(training) == TRAINING_BATCH
    assert len(set(run_only.values())) == 1 and next(iter(run_only.values()))[0] == 256, run_only
    helps = {h for _, h in training.values()}  # one sentence saying it is the recipe's, not a speed knob
    assert all(h.startswith("Training batch: images per optimizer step") for h in helps), helps


@pytest.mark.parametrize("option", ["--device", "--json", "--data-root", "--threads", "--seed"])
def test_shared_options_say_the_same(option):
    helps = {path: options(cmd)[option].help for path, cmd in commands().items() if option in options(cmd)}
    assert len(helps) >= 2 and len(set(helps.values())) == 1, helps


def test_every_budget_takes_a_fraction(capsys):
    budgets = [(path, o) for path, cmd in commands().items() for o in options(cmd) if re.search(r"(^|-)eps$", o)]
    assert ("evaluate", "--eps") in budgets and ("train", "--adv-eps") in budgets
    for path, option in budgets:
        main([*path.split(), option, "a/b"])  # refused by the budget parser, not by a float parser
        err = capsys.readouterr().err
        assert option in err and "fraction such as 8/255" in err, (path, option, err)
        main([*path.split(), option, "8/255"])  # parsed: what fails next is not the budget
        err = capsys.readouterr().err
        assert f"'{option}'" not in err and "Invalid value" not in err, (path, option, err)


def test_version():
    for flag in ("--version", "-V"):
        done = CliRunner().invoke(_app(), [flag])
        assert done.exit_code == 0
        assert re.fullmatch(rf"robustlab {re.escape(robustlab.__version__)} \(torch {re.escape(torch.__version__)}, "
                            r"Python [\d.]+\)\n", done.stdout), done.stdout


# --- the old spellings: the same values reach the command, with one deprecation line --------------

class Stop(ConfigError):
    pass


def _capture(monkeypatch, target: str, seen: dict, pick):
    """Replace `target` by a function recording what `pick(args, kwargs)` returns, then stopping the command."""
    def fake(*args, **kwargs):
        seen.update(pick(args, kwargs))
        raise Stop("stop here")
    monkeypatch.setattr(target, fake)


def _evaluate(tmp_path, monkeypatch, seen):
    (tmp_path / "net.py").write_text("import torch\ndef make():\n    return torch.nn.Sequential("
                                     "torch.nn.Flatten(), torch.nn.Linear(64, 10))\n")
    _capture(monkeypatch, "robustlab.cli.cmd_evaluate.prepare_grid", seen, lambda a, k: {"out": a[1]})
    return ["evaluate", "--module", f"{tmp_path / 'net.py'}:make", "--data", "digits", "--eps", "0.1"]


def _run(tmp_path, monkeypatch, seen):
    (tmp_path / "e.yaml").write_text("data: {name: digits, n_eval: 20}\nmodels: [{id: m, model: {backbone: mlp, "
                                     "head: softmax}}]\nattacks: [fgsm]\neps: [0.1]\n")
    _capture(monkeypatch, "robustlab.cli.cmd_run.run_grid", seen, lambda a, k: {"out": a[1]})
    return ["run", str(tmp_path / "e.yaml")]


def _demo(tmp_path, monkeypatch, seen):
    _capture(monkeypatch, "robustlab.cli.cmd_demo.run_experiment", seen,
             lambda a, k: {"out": a[1], "overwrite": k["overwrite"]})
    return ["demo", "--out", str(tmp_path / "d")]


def _train(tmp_path, monkeypatch, seen):
    from robustlab.cli import cmd_train

    real = cmd_train.TrainConfig

    def train_config(**kwargs):
        seen.update(objective_args=kwargs["objective_args"], adv=kwargs["adv"])
        return real(**kwargs)

    monkeypatch.setattr(cmd_train, "TrainConfig", train_config)
    _capture(monkeypatch, "robustlab.cli.cmd_train.ModelConfig", seen,
             lambda a, k: {"backbone": k["backbone_args"], "head": k["head_args"]})
    return ["train", "--data", "digits", "--backbone", "mlp", "--adv", "trades", "--out", str(tmp_path / "c")]


def _anonymize(tmp_path, monkeypatch, seen):
    monkeypatch.setattr("robustlab.cli.cmd_anonymize.read_checkpoint_config", lambda path: {})
    monkeypatch.setattr("robustlab.cli.cmd_anonymize.load_checkpoint", lambda path, device: None)
    _capture(monkeypatch, "robustlab.privacy.anonymize.anonymize_folder", seen,
             lambda a, k: {"out": a[2], "params": k["attack_params"]})
    (tmp_path / "in").mkdir(exist_ok=True)
    return ["anonymize", str(tmp_path / "in"), "--model", str(tmp_path / "m")]


# (build the command, old spelling, new spelling, the old spellings named by the warnings, in order)
OLD = [
    (_evaluate, ["--run-dir", "R"], ["--out", "R"], ["--run-dir"]),
    (_evaluate, ["--run-dir=R"], ["--out=R"], ["--run-dir"]),
    (_run, ["--run-dir", "R"], ["--out", "R"], ["--run-dir"]),
    (_demo, ["--fresh"], ["--overwrite"], ["--fresh"]),
    (_train, ["--backbone-arg", "hidden=[16]", "--head-arg", "scale=2", "--adv-arg", "beta=6",
              "--objective-arg", "x=1"],
     ["-p", "backbone.hidden=[16]", "-p", "head.scale=2", "-p", "adv.beta=6", "-p", "objective.x=1"],
     ["--backbone-arg", "--head-arg", "--adv-arg", "--objective-arg"]),
    (_anonymize, ["O", "--attack-arg", "growth=2"], ["--out", "O", "-p", "growth=2"],
     ["--attack-arg", "positional output folder"]),
    (_anonymize, ["O"], ["--out", "O"], ["positional output folder"]),
]


@pytest.mark.parametrize("build, old, new, named", OLD, ids=[f"{b.__name__[1:]}{o}" for b, o, _, _ in OLD])
def test_old_spellings_still_work(tmp_path, monkeypatch, build, old, new, named):
    results = []
    for args in (old, new):
        seen: dict = {}
        cli = build(tmp_path, monkeypatch, seen)
        args = [str(tmp_path / a) if a in ("R", "O") else a for a in args]
        done = CliRunner().invoke(_app(), [*cli, *args])
        assert isinstance(done.exception, Stop), (done.exception, done.stderr)
        results.append((seen, done.stderr))
    (old_seen, old_err), (new_seen, new_err) = results
    assert old_seen == new_seen and old_seen
    assert "deprecated" not in new_err
    warnings = [line for line in old_err.splitlines() if "deprecated" in line]
    assert warnings and all(line.startswith("warning: ") for line in warnings), old_err
    assert len(warnings) == len(named) and all(n in w for n, w in zip(named, warnings, strict=True)), warnings
    for line in warnings:  # each names the new spelling
        assert re.search(r"use (-p [a-z.]*KEY=VALUE|--out|--overwrite)", line), line


def test_old_data_root_of_datasets(tmp_path):
    old = CliRunner().invoke(_app(), ["datasets", "--root", str(tmp_path), "--json"])
    new = CliRunner().invoke(_app(), ["datasets", "--data-root", str(tmp_path), "--json"])
    assert old.exit_code == new.exit_code == 0 and old.stdout == new.stdout and str(tmp_path) in new.stdout
    assert old.stderr.count("\n") == 1 and "--root is deprecated" in old.stderr and "use --data-root" in old.stderr


@pytest.mark.parametrize("path", ["evaluate", "run", "demo", "datasets", "train", "anonymize"])
def test_old_spellings_are_hidden_from_help(capsys, monkeypatch, path):
    monkeypatch.setenv("COLUMNS", "200")
    assert main([path, "--help"]) == 0
    text = capsys.readouterr().out
    for old in ("--run-dir", "--fresh", "--root ", "--attack-arg", "--adv-arg", "--backbone-arg", "--head-arg",
                "--objective-arg", "OUTPUT_DIR", "output_dir"):
        assert old not in text, (path, old)


def test_keys_need_a_known_prefix_on_train(capsys, tmp_path):
    for bad, says in (("hidden=[16]", "no prefix"), ("model.hidden=[16]", "unknown prefix 'model'")):
        code = main(["train", "-p", bad, "--out", str(tmp_path / "c")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and says in err and "backbone., head., adv., objective." in err
        assert not (tmp_path / "c").exists()


def test_anonymize_takes_its_output_folder_once(capsys, tmp_path):
    (tmp_path / "in").mkdir()
    for extra, says in (([], "needs --out"), (["O", "--out", "O"], "once")):
        code = main(["anonymize", str(tmp_path / "in"), "--model", str(tmp_path), *extra])
        err = capsys.readouterr().err
        assert code == 2 and says in err and not Path("O").exists(), err


def test_seed_reaches_evaluate_and_demo(tmp_path, monkeypatch):
    """--seed draws evaluate's --n-eval subset and the attacks' random starts (0, their default, stays out
    of their keys), and trains demo's models."""
    seen: dict = {}
    cli = _evaluate(tmp_path, monkeypatch, seen)
    _capture(monkeypatch, "robustlab.cli.cmd_evaluate.prepare_grid", seen,
             lambda a, k: {"digest": next(iter(k["samples"].values())).digest,
                           "params": [attack.spec.params for attack in a[0].attacks]})
    drawn = {}
    for seed in ("0", "3"):
        done = CliRunner().invoke(_app(), [*cli, "--attack", "pgd", "--attack", "fgsm", "--n-eval", "30",
                                           "--seed", seed])
        assert isinstance(done.exception, Stop), done.stderr
        drawn[seed] = dict(seen)
    assert drawn["0"]["digest"] != drawn["3"]["digest"]
    assert drawn["0"]["params"] == [{}, {}] and drawn["3"]["params"] == [{"seed": 3}, {"seed": 3}]
    trained: dict = {}
    _capture(monkeypatch, "robustlab.cli.cmd_demo.run_experiment", trained,
             lambda a, k: {"seeds": {m.train.seed for m in a[0].models}, "ids": [m.id for m in a[0].models]})
    done = CliRunner().invoke(_app(), ["demo", "--out", str(tmp_path / "d"), "--seed", "3"])
    assert isinstance(done.exception, Stop) and trained["seeds"] == {3} and "@" not in "".join(trained["ids"])
