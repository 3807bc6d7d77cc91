"""Fuzzing `robustlab run` with mutated experiment files (deterministic seeds).

Each case mutates a small valid file that uses every section (sweep, defenses, attacks with
their own grids, transfer, claims, executor, plugins): a value replaced by one of the wrong
type or a hostile one (lists for mappings, mappings for strings, booleans for integers, NaN,
infinities, negatives, huge integers, unicode, NUL, traversal, null, deep nesting), a key
dropped or an unknown one added, a subtree moved elsewhere, or the text cut or spliced.

The oracle: `robustlab run FILE` (no --out: ``runs/<name>`` in a fresh folder) either
succeeds, or exits 2 with exactly one ``error:`` line; never a traceback or an internal
error; nothing is created or changed outside ``runs/`` (the file tree is compared before and
after); and every directory the run would write a checkpoint or a defended model to lies
inside its run directory. The grid's tasks are not run (the driver's `run` is replaced by a
check of those directories, and no Ray instance is started), so a case costs validation only: everything up to the first
training, where a bad value must already have been refused.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from robustlab.cli.app import main
from robustlab.experiment import runner
from robustlab.experiment.executors import LocalExecutor

BASE: dict[str, Any] = {
    "name": "fz",
    "data": {"name": "digits", "n_eval": 20, "seed": 0},
    "models": [{"id": "m", "model": {"backbone": "mlp", "head": "softmax", "backbone_args": {"hidden": [16]}},
                "train": {"epochs": 1, "lr": 0.01, "optimizer": "adam"}, "sweep": {"train.seed": [0, 1]}},
               {"id": "s", "model": {"backbone": "mlp"}, "train": {"epochs": 1}, "seeds": [0, 1]}],
    "defenses": [{"name": "squeeze", "squeezers": ["bits:4"], "id": "sq", "non_adaptive": True}],
    "attacks": ["fgsm", {"name": "pgd", "steps": 2, "eps": [0.1], "id": "p"}],
    "eps": [0, 0.1],
    "transfer": {"sources": ["m(seed=0)"], "targets": ["m(seed=1)"], "attacks": ["fgsm"]},
    "claims": [{"model": "m(seed=0)", "attack": "fgsm", "eps": "1/10", "published": 0.5, "ref": "T1",
                "tolerance": 0.1, "deviations": ["fewer epochs"]}],
    "deviations": ["digits instead of MNIST"],
    "batch_size": 64,
    "executor": {"name": "local", "num_cpus": 1, "max_retries": 1},
    "plugins": [],
}


def _deep(depth: int) -> Any:
    value: Any = "x"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


HOSTILE: list[Any] = [
    None, True, False, 0, -1, 1, 3, 2**70, -(2**70), 1e308, -0.0, 0.5, math.nan, math.inf, -math.inf,
    "", " ", "x", "../escape", "../../../../escape", "/abs/escape", "x" * 300, "é🙂\u202e", "a\0b", "a:b",
    "C:\\x", "bits:99", "fgsm", "m", "none", "worst-case", "ray", [], [[]], [None], [1, "a", None],
    [math.nan], ["../x"], {}, {"a": 1}, {"name": {"id": []}}, {"name": "fgsm", "eps": [math.inf]},
    _deep(30), _deep(70), list(range(50)),
]


def _positions(node: Any, path: tuple = ()) -> list[tuple]:
    """Every path to a value in `node` (mapping keys and list indices)."""
    out = [path] if path else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _positions(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _positions(v, (*path, i))
    return out


def _get(node: Any, path: tuple) -> Any:
    for p in path:
        node = node[p]
    return node


def mutate(rng: random.Random) -> str:
    """One mutated experiment file (YAML text)."""
    doc = copy.deepcopy(BASE)
    for _ in range(rng.choice((1, 1, 2, 3))):
        positions = _positions(doc)
        if not positions:
            break
        path = rng.choice(positions)
        parent, key = _get(doc, path[:-1]), path[-1]
        op = rng.random()
        if op < 0.6:
            parent[key] = copy.deepcopy(rng.choice(HOSTILE))
        elif op < 0.7:
            del parent[key]
        elif op < 0.8 and isinstance(parent, dict):
            parent[rng.choice(["bogus", "id", "name", "eps", "models", "storage", "root"])] = rng.choice(HOSTILE)
        elif op < 0.9:
            parent[key] = [parent[key]]
        else:
            parent[key] = copy.deepcopy(_get(doc, rng.choice(positions)))
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    if rng.random() < 0.1:  # cut or splice the text itself
        at = rng.randrange(len(text))
        text = text[:at] if rng.random() < 0.5 else text[:at] + rng.choice(["&a ", "*a", ": :", "\t", "{", "- "]) + \
            text[at:]
    return text


def snapshot(root: Path, skip: Path) -> dict[str, str]:
    return {str(p): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if skip != p and skip not in p.parents}


@pytest.fixture
def no_tasks(monkeypatch):
    """Replace the driver's run: check where it would write, run nothing."""
    seen: list[str] = []

    def run(self: runner.Driver) -> runner.GridOutcome:
        root = self.run_dir.resolve()
        for mspec in self.spec.models:
            where = self._checkpoint_dir(mspec, "0" * 10).resolve()
            base = self.storage.resolve() if self.storage is not None else root
            assert base in where.parents, f"checkpoint of {mspec.id!r} at {where}, outside {base}"
            for d in self.spec.defenses_for(mspec):
                assert root in self._defense_dir(mspec, d).resolve().parents, f"defense {d.id!r} outside {root}"
        seen.append(str(root))
        return self.outcome

    monkeypatch.setattr(runner.Driver, "run", run)
    monkeypatch.setattr(runner, "make_executor", lambda spec, debug=False: LocalExecutor())  # no Ray start
    return seen


def test_base_file_is_valid(tmp_path, monkeypatch, capsys, no_tasks):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(BASE))
    assert main(["run", "exp.yaml"]) == 0, capsys.readouterr().err
    assert no_tasks == [str((tmp_path / "runs" / "fz").resolve())]


@pytest.mark.parametrize("seed", range(8))
def test_mutated_experiment_files(tmp_path, monkeypatch, capsys, no_tasks, seed):
    """20 mutated files per seed (160 in all): one line or success, nothing written outside runs/."""
    rng = random.Random(seed)
    outcomes: dict[str, int] = {}
    for case in range(20):
        work = tmp_path / f"case{case}" / "a" / "b" / "work"
        work.mkdir(parents=True)
        monkeypatch.chdir(work)
        text = mutate(rng)
        (work / "exp.yaml").write_text(text, encoding="utf-8", errors="surrogatepass")
        before = snapshot(tmp_path, work / "runs")
        rc = main(["run", "exp.yaml"])
        captured = capsys.readouterr()
        err = captured.err.strip()
        label = f"seed {seed} case {case}:\n{text[:2000]}\n-> exit {rc}: {err[:2000]}"
        assert "Traceback" not in err + captured.out and "internal error" not in err, label
        assert rc in (0, 2), label
        if rc == 2:
            assert len(err.splitlines()) == 1 and err.startswith("error: "), label
        assert snapshot(tmp_path, work / "runs") == before, f"files changed outside runs/ by {label}"
        outcomes[err.split(":")[1].strip()[:20] if rc else "ok"] = rc
    print(json.dumps(outcomes, indent=0))
