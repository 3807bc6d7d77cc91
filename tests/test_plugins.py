"""Plugins from outside the package (`--plugin`, `plugins:` in experiment files, entry points) add an
attack, a defense and a report section that the CLI, the experiment driver and the report use;
every registry answers an unknown name with the same error."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from robustlab.cli.app import main
from robustlab.core.errors import ConfigError
from robustlab.core.registry import Registry, UnknownNameError

PLUGIN = '''
"""A lab's own attack, defense and report section, registered on import."""

import torch

from robustlab.attacks.base import FixedBudgetAttack, RunOutput
from robustlab.attacks.registry import register_attack
from robustlab.defenses import Defense, DefenseBuild, register_defense
from robustlab.defenses.squeeze import SqueezedModel
from robustlab.report import Section, register_section


@register_attack
class Brighten(FixedBudgetAttack):
    """Every pixel + eps (clipped): one query, no gradient."""

    name = "{prefix}-brighten"

    def _run(self, model, x, y, targets, criterion, generator):
        return RunOutput((x + self.eps).clamp(0, 1), torch.ones(len(x), dtype=torch.long), {{}})


class Posterize(SqueezedModel):
    defense_name = "{prefix}-posterize"


def _settings(bits: int = 3):
    if not 1 <= bits <= 8:
        raise ValueError("bits must lie in 1..8")
    return [f"bits:{{bits}}"]


register_defense(Defense(
    name="{prefix}-posterize", summary="Colour depth cut to BITS before the classifier.",
    check=_settings, build=lambda model, data, squeezers: DefenseBuild(Posterize(model, squeezers)),
    structure=Posterize, help={{"bits": "Bits per channel, 1..8."}},
))


@register_section("{prefix}-notes", order=96)
def notes(ctx):
    n = len(ctx.doc["rows"])
    return Section("{prefix}-notes", "Lab notes", html=f"<p>{{n}} rows</p>", markdown=f"{{n}} rows", data={{"rows": n}})
'''


def _last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


@pytest.fixture()
def plugin(tmp_path, monkeypatch, request):
    """A plugin module written in tmp_path (outside the package) and put on sys.path; its name and
    what it registers are unique to the test, and removed again afterwards."""
    from robustlab.attacks.registry import ATTACKS
    from robustlab.core import plugins
    from robustlab.defenses import DEFENSES
    from robustlab.report.sections import SECTIONS

    monkeypatch.setattr(plugins, "_FOR_WORKERS", {})  # this test's --plugin is forgotten with it

    prefix = "lab" + request.node.name.split("[")[0][-12:].replace("_", "")
    name = f"{prefix}_plugin"
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / f"{name}.py").write_text(PLUGIN.format(prefix=prefix))
    monkeypatch.syspath_prepend(str(folder))
    yield name, prefix
    for registry, entry in ((ATTACKS, "brighten"), (DEFENSES, "posterize"), (SECTIONS, "notes")):
        if f"{prefix}-{entry}" in registry:
            registry.remove(f"{prefix}-{entry}")
    sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def base_ckpt(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("plugins") / "base"
    assert main(["train", "--data", "digits", "--backbone", "mlp", "--epochs", "4", "--optimizer", "adam",
                 "--lr", "0.003", "--out", str(ckpt), "--json"]) == 0
    return ckpt


def _brightened_accuracy(ckpt: Path, eps: float, n: int = 40) -> tuple[float, float]:
    """(clean, robust) accuracy of the checkpoint on the n digits `evaluate` takes, pixels + eps: the
    reference the plugin attack's row must match."""
    from robustlab.data import load_dataset
    from robustlab.evaluate.samples import eval_set
    from robustlab.store import load_checkpoint

    model = load_checkpoint(ckpt)
    samples = eval_set(load_dataset("digits"), n)
    x, y = samples.x, samples.y
    with torch.no_grad():
        clean = model.predict(x) == y
        fooled = model.predict((x + eps).clamp(0, 1)) != y
    return float(clean.float().mean()), float((clean & ~fooled).float().mean())


def test_cli_plugin_adds_an_attack_a_defense_and_a_report_section(capsys, plugin, base_ckpt, tmp_path):
    name, prefix = plugin
    # without the plugin the names are unknown: one line, exit 2
    run = tmp_path / "run"
    assert main(["evaluate", "--model", str(base_ckpt), "--attack", f"{prefix}-brighten", "--eps", "0.2",
                 "--n-eval", "40", "--out", str(run)]) == 2
    assert f"unknown attack '{prefix}-brighten'" in capsys.readouterr().err
    assert main(["defend", f"{prefix}-posterize", "--model", str(base_ckpt), "--out", str(tmp_path / "d")]) == 2
    capsys.readouterr()

    # the attack, through `evaluate --attack NAME`
    assert main(["--plugin", name, "evaluate", "--model", str(base_ckpt), "--attack", f"{prefix}-brighten",
                 "--eps", "0", "--eps", "0.5", "--n-eval", "40", "--no-self-test", "--out", str(run),
                 "--json"]) == 0
    rows = [r for r in _last_json(capsys.readouterr().out)["rows"] if r["attack"] == f"{prefix}-brighten"]
    clean, robust = _brightened_accuracy(base_ckpt, 0.5)
    by_eps = {r["eps"]: r for r in rows}
    assert by_eps[0.5]["robust_accuracy"] == pytest.approx(robust) and robust < clean
    assert by_eps[0.0]["robust_accuracy"] == pytest.approx(clean)

    # the defense, as `robustlab defend NAME` with its declared option
    out = tmp_path / "posterized"
    assert main(["--plugin", name, "defend", f"{prefix}-posterize", "--bits", "2", "--model", str(base_ckpt),
                 "--out", str(out), "--json"]) == 0
    doc = _last_json(capsys.readouterr().out)
    from robustlab.defenses.squeezers import quantize
    from robustlab.store import load_checkpoint

    defended, base = load_checkpoint(out), load_checkpoint(base_ckpt)
    assert defended.defense_spec() == {"name": f"{prefix}-posterize", "args": {"squeezers": ["bits:2"]}}
    x = torch.rand(16, 1, 8, 8)
    assert torch.equal(defended.predict(x), base.predict(quantize(x, 2)))
    assert 0 <= doc["clean_accuracy"] <= 1
    assert main(["--plugin", name, "defend", f"{prefix}-posterize", "--bits", "9", "--model", str(base_ckpt),
                 "--out", str(tmp_path / "never")]) == 2
    assert "bits must lie in 1..8" in capsys.readouterr().err and not (tmp_path / "never").exists()

    # the report section, in the written report
    assert main(["--plugin", name, "report", str(run)]) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["sections"][f"{prefix}-notes"]["data"] == {"rows": len(report["rows"])}
    assert "Lab notes" in (run / "report.md").read_text()


def test_a_plugin_that_fails_is_one_line_and_exit_2(capsys, tmp_path, monkeypatch):
    (tmp_path / "broken_lab_plugin.py").write_text("raise RuntimeError('no licence for this attack')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["--plugin", "broken_lab_plugin", "datasets"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "broken_lab_plugin" in err and "no licence for this attack" in err
    assert main(["--plugin", "../evil", "datasets"]) == 2
    assert "absolute module name" in capsys.readouterr().err


def test_experiment_file_plugins(capsys, plugin, tmp_path):
    """`plugins:` in an experiment file: the attack, the defense and the section reach `run`'s rows and report."""
    name, prefix = plugin
    exp = tmp_path / "exp.yaml"
    exp.write_text(textwrap.dedent(f"""
        name: plug
        data: {{name: digits, n_eval: 40}}
        plugins: [{name}]
        models: [{{id: mlp, model: {{backbone: mlp, head: softmax}}, train: {{epochs: 2, optimizer: adam, lr: 0.003}}}}]
        defenses: [{{id: post, name: {prefix}-posterize, bits: 2}}]
        attacks: [{prefix}-brighten]
        eps: [0.2]
        self_test: false
    """))
    run = tmp_path / "run"
    assert main(["run", str(exp), "--out", str(run), "--json"]) == 0
    capsys.readouterr()
    report = json.loads((run / "report.json").read_text())
    rows = [r for r in report["rows"] if r["attack"] == f"{prefix}-brighten"]
    assert {r["defense"] for r in rows} == {"none", f"{prefix}-posterize(bits:2)"}  # the defended model's label
    assert report["sections"][f"{prefix}-notes"]["data"] == {"rows": len(report["rows"])}


def test_cli_plugins_reach_the_experiment_workers(capsys, plugin, tmp_path, monkeypatch):
    """`robustlab --plugin M run FILE` (M not in the file): every task's worker imports M too."""
    from robustlab.experiment import tasks

    name, prefix = plugin
    imported: list[tuple[str, ...]] = []
    real = tasks.import_plugins
    monkeypatch.setattr(tasks, "import_plugins", lambda modules: (imported.append(tuple(modules)), real(modules)))
    exp = tmp_path / "exp.yaml"
    exp.write_text(textwrap.dedent(f"""
        name: plug
        data: {{name: digits, n_eval: 40}}
        models: [{{id: mlp, model: {{backbone: mlp, head: softmax}}, train: {{epochs: 1}}}}]
        attacks: [{prefix}-brighten]
        eps: [0.2]
        self_test: false
    """))
    assert main(["run", str(exp), "--out", str(tmp_path / "never")]) == 2
    assert f"unknown attack '{prefix}-brighten'" in capsys.readouterr().err
    assert main(["--plugin", name, "run", str(exp), "--out", str(tmp_path / "run")]) == 0
    assert imported and all(modules == (name,) for modules in imported)


def test_entry_point_plugins_load_at_cli_start(capsys, plugin, base_ckpt, tmp_path, monkeypatch):
    """An installed distribution's entry point (group robustlab.plugins) is loaded without --plugin."""
    name, prefix = plugin
    site = tmp_path / "site"
    info = site / f"{prefix}_dist-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {prefix}-dist\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[robustlab.plugins]\nlab = {name}\n")
    monkeypatch.syspath_prepend(str(site))
    assert main(["evaluate", "--model", str(base_ckpt), "--attack", f"{prefix}-brighten", "--eps", "0.5",
                 "--n-eval", "40", "--no-self-test", "--out", str(tmp_path / "run"), "--json"]) == 0
    (row,) = [r for r in _last_json(capsys.readouterr().out)["rows"] if r["attack"] == f"{prefix}-brighten"]
    assert row["robust_accuracy"] == pytest.approx(_brightened_accuracy(base_ckpt, 0.5)[1])
    assert main(["defend", f"{prefix}-posterize", "--help"]) == 0
    assert "--bits" in capsys.readouterr().out


def test_a_broken_entry_point_is_one_line_and_exit_2(capsys, tmp_path, monkeypatch):
    site = tmp_path / "site"
    info = site / "brokenlab-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenlab\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[robustlab.plugins]\nbroken = brokenlab_module_that_is_missing\n")
    monkeypatch.syspath_prepend(str(site))
    assert main(["datasets"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "plugin entry point 'broken'" in err and "ModuleNotFoundError" in err


# ---------------------------------------------------------------- one error for an unknown name
def _registries() -> dict[str, Registry]:
    from robustlab.attacks.criteria import CRITERIA
    from robustlab.attacks.objectives import ATTACK_LOSSES
    from robustlab.attacks.registry import ATTACKS
    from robustlab.data.registry import DATASETS
    from robustlab.defenses import DEFENSES
    from robustlab.defenses.squeezers import SQUEEZERS
    from robustlab.experiment.executors import EXECUTORS
    from robustlab.models import BACKBONES, HEADS
    from robustlab.models.zoo.registry import ZOO
    from robustlab.report.sections import SECTIONS
    from robustlab.train.adversarial import METHODS
    from robustlab.train.objectives import OBJECTIVES

    return {"attack": ATTACKS, "defense": DEFENSES, "head": HEADS, "backbone": BACKBONES, "objective": OBJECTIVES,
            "adversarial-training method": METHODS, "squeezer": SQUEEZERS, "dataset": DATASETS,
            "report section": SECTIONS, "executor": EXECUTORS, "attack loss": ATTACK_LOSSES,
            "success criterion": CRITERIA, "zoo architecture": ZOO}


def _expected(kind: str, bad: str, close: str, registry: Registry) -> str:
    return f"unknown {kind} {bad!r} (did you mean {close!r}?); known: {', '.join([*registry.names(), *registry.also])}"


@pytest.mark.parametrize("kind", sorted(_registries()))
def test_every_registry_gives_the_same_error_for_an_unknown_name(kind):
    registry = _registries()[kind]
    assert registry.kind == kind and len(registry) >= 2
    known = registry.names()[0]
    bad = known + "q"
    with pytest.raises(UnknownNameError) as info:
        registry.get(bad)
    assert str(info.value) == _expected(kind, bad, known, registry)
    assert isinstance(info.value, ConfigError)


@pytest.mark.parametrize("call, kind, bad, close", [
    (lambda: __import__("robustlab.attacks", fromlist=["x"]).make_attack("pgdd", eps=0.1), "attack", "pgdd", "pgd"),
    (lambda: __import__("robustlab.defenses", fromlist=["x"]).check_defense_params("magent"), "defense", "magent",
     "magnet"),
    (lambda: __import__("robustlab.models", fromlist=["x"]).build_model(
        {"backbone": "mlp", "head": "arcfac", "num_classes": 10, "input_shape": [1, 8, 8]}), "head", "arcfac",
     "arcface"),
    (lambda: __import__("robustlab.data", fromlist=["x"]).load_dataset("digit"), "dataset", "digit", "digits"),
    (lambda: __import__("robustlab.defenses", fromlist=["x"]).make_squeezer("bitz:4"), "squeezer", "bitz", "bits"),
    (lambda: __import__("robustlab.attacks", fromlist=["x"]).make_criterion("topk_excluded"), "success criterion",
     "topk_excluded", "topk"),
    (lambda: __import__("robustlab.train.adversarial", fromlist=["x"]).get_method("trade"),
     "adversarial-training method", "trade", "trades"),
    (lambda: __import__("robustlab.experiment.spec", fromlist=["x"]).ExecutorSpec("rey"), "executor", "rey", "ray"),
])
def test_the_public_helpers_raise_it_too(call, kind, bad, close):
    registry = _registries()[kind]
    with pytest.raises(UnknownNameError) as info:
        call()
    assert str(info.value) == _expected(kind, bad, close, registry)


def test_registry_aliases_duplicates_and_replace():
    reg: Registry[int] = Registry("widget")
    reg.register("Alpha", 1, aliases=("a",))
    assert reg.get("ALPHA") == reg.get("a") == 1 and "a" in reg and reg.names() == ["alpha"]
    reg.register("alpha", 1, aliases=("a",))  # the same entry again (a module imported twice): a no-op
    with pytest.raises(ConfigError, match="widget 'alpha' is already registered; pass replace=True"):
        reg.register("alpha", 2)
    with pytest.raises(ConfigError, match="widget 'a' is already registered"):
        reg.register("beta", 3, aliases=("a",))
    reg.register("alpha", 2, replace=True)
    assert reg.get("a") == 2
    assert reg.remove("alpha") == 2 and "a" not in reg and len(reg) == 0
    with pytest.raises(UnknownNameError, match=r"unknown widget 'zeta'; known: \(none\)"):
        reg.get("zeta")
