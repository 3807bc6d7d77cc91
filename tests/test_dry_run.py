"""`robustlab run FILE --dry-run`: every check of `run` before its first write, then the plan and
its cost bound; nothing trained, run or written."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from robustlab.cli.app import main
from robustlab.data import load_dataset
from robustlab.experiment import ExperimentSpec
from robustlab.experiment.plan import plan_experiment, plan_size

N = 50
DOC = {
    "name": "dry",
    "data": {"name": "digits", "n_eval": N},
    "models": [
        {"id": "a", "model": {"backbone": "mlp"}, "train": {"epochs": 2}},
        {"id": "b", "model": {"backbone": "mlp"},
         "train": {"epochs": 1, "adv": {"method": "pgd", "eps": 0.1, "steps": 3}}},
    ],
    "defenses": [{"name": "squeeze", "squeezers": ["bits:3"]}],
    "attacks": ["fgsm", {"name": "pgd", "steps": 3, "restarts": 2}],
    "eps": [0, 0.1, 0.2],
    "transfer": {"sources": ["a", "b"], "targets": ["a", "b"], "attacks": ["pgd"]},
}


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


def _dry(capsys, tmp_path, doc, *extra: str) -> tuple[int, str, str]:
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(doc))
    before = _snapshot(tmp_path)
    code = main(["run", str(tmp_path / "exp.yaml"), "--out", str(tmp_path / "run"), "--dry-run", *extra])
    captured = capsys.readouterr()
    assert _snapshot(tmp_path) == before  # nothing written: no run directory, no checkpoint, no store
    return code, captured.out, captured.err


def test_dry_run_counts_are_the_planners_and_the_cost_is_the_attacks_budget(capsys, tmp_path):
    code, out, err = _dry(capsys, tmp_path, DOC, "--json")
    assert code == 0, err
    plan = json.loads(out.strip().splitlines()[-1])
    spec = ExperimentSpec.from_dict(DOC)
    counts = plan_experiment(spec).counts()
    assert plan["dry_run"] and plan["run_dir_state"] == "new"
    assert (plan["trainings"], plan["defenses"], plan["cells"], plan["transfer"]) == (
        counts["models"], counts["defenses"], counts["cells"], counts["transfer"]) == (2, 2, 24, 4)
    assert plan_size(spec) == {k: counts[k] for k in ("models", "defenses", "cells", "transfer")}
    # (model, defense) owners x positive eps; the probes: one per owner
    assert plan["selftests"] == 4 * 2 and plan["probes"] == 4 and plan["samples"] == {"digits": N}
    # closed forms: FGSM one forward+backward (+2 checks); PGD steps x restarts (+ restarts + 2)
    fgsm, pgd = (1, 2), (3 * 2, 2 + 2)
    per_eps = (fgsm[0] + pgd[0], fgsm[1] + pgd[1])
    cells = plan["passes"]["cells"]
    assert cells == {"fb": 4 * 2 * per_eps[0] * N, "f": 4 * (2 * N + 2 * per_eps[1] * N)}  # eps 0: one forward
    assert plan["passes"]["transfer"] == {"fb": 2 * 2 * pgd[0] * N, "f": 2 * 2 * (pgd[1] + 1) * N}
    assert plan["passes"]["selftests"] == {"fb": 8 * per_eps[0] * N, "f": 8 * per_eps[1] * N}
    n_train = len(load_dataset("digits").y_train)
    assert plan["passes"]["training"] == {"fb": (2 + 1 * (1 + 3)) * n_train, "f": 0}
    code, out, _ = _dry(capsys, tmp_path, DOC)
    assert code == 0 and "24 cells" in out and "4 transfer cells" in out and "Nothing run or written" in out


@pytest.mark.parametrize(("change", "message"), [
    ({"attacks": [{"name": "pgd", "steps": -1}]}, "steps"),
    ({"models": [{"id": "a", "model": {"backbone": "nope"}}]}, "nope"),
    ({"models": [{"checkpoint": "/nonexistent/ckpt"}]}, "no checkpoint"),
])
def test_a_bad_file_is_one_line_and_writes_nothing(capsys, tmp_path, change, message):
    code, _, err = _dry(capsys, tmp_path, {**DOC, "transfer": None, **change})
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_dry_run_refuses_what_run_refuses_before_writing(capsys, tmp_path):
    """A run directory that is a non-empty folder of something else is refused by the dry run too."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    code, _, err = _dry(capsys, tmp_path, DOC)
    assert code == 2 and "not empty" in err and len(err.strip().splitlines()) == 1
