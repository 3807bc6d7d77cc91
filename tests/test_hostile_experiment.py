"""Hostile experiment files: every value that names a path is a plain name, reading a file and
planning its work are bounded, a Ray address that does not answer fails in a stated time, and
bad claims or plugins are one line. Each case: exit 2, one `error:` line on stderr, no traceback,
and no file created or changed anywhere under the test's directory (the run directory
included: validation comes before the first write).

Most cases run in-process through `robustlab.cli.app.main` with the working directory in a
fresh folder (so ``runs/<name>`` is resolved there); `test_subprocess_*` run the real
``python -m robustlab``.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from robustlab.cli.app import main

BASE = {
    "name": "tiny",
    "data": {"name": "digits", "n_eval": 20},
    "models": [{"id": "m", "model": {"backbone": "mlp", "head": "softmax"}, "train": {"epochs": 1}}],
    "attacks": ["fgsm"],
    "eps": [0, 0.1],
}


def snapshot(root: Path) -> dict[str, str]:
    """Every path under `root` with the digest of its bytes ("dir" for a directory)."""
    return {str(p): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


def doc(**changes) -> dict:
    return {**BASE, **changes}


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A folder to run in (``runs/`` lands here) inside `tmp_path`, which is watched whole."""
    folder = tmp_path / "a" / "b" / "c" / "work"
    folder.mkdir(parents=True)
    monkeypatch.chdir(folder)
    return folder


def refuse(capsys, root: Path, text: str | dict, match: str, *extra: str, budget: float = 30.0) -> str:
    """Write the experiment `text` under `root`, run it; assert exit 2, one error line naming
    `match`, within `budget` seconds, with nothing under `root` changed but the file itself."""
    path = root / "exp.yaml"
    path.write_text(text if isinstance(text, str) else yaml.safe_dump(text))
    before = snapshot(root.parents[3])
    start = time.monotonic()
    rc = main(["run", str(path), *extra])
    seconds = time.monotonic() - start
    err = capsys.readouterr().err.strip()
    assert rc == 2, f"exit {rc}: {err}"
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "internal error" not in err and "Traceback" not in err, err
    assert match.lower() in err.lower(), f"{match!r} not in {err!r}"
    assert snapshot(root.parents[3]) == before, "files changed"
    assert seconds < budget, f"{seconds:.1f} s to refuse"
    return err


# ------------------------------------------------------------------ paths from the file
@pytest.mark.parametrize("name", ["../../../escape", "ABSOLUTE", "..", ".", "", "a/b", "a\\b", "C:evil",
                                  "x\0y", "x" * 201, " x", 12.5, ["a"], {"a": 1}, None, True])
def test_run_name_must_be_a_plain_name(capsys, work, name):
    """`name` picks ``runs/<name>`` when no --out is given: traversal, absolute paths,
    separators, NUL, overlong and non-string names are refused before anything is written."""
    name = str(work.parents[2] / "abs-escape") if name == "ABSOLUTE" else name
    refuse(capsys, work, doc(name=name), "name")


def test_model_defense_and_sweep_ids_must_be_plain_names(capsys, work):
    """Ids become ``checkpoints/<id>`` and ``defenses/<id>/<defense>``; a sweep point's id
    carries the swept values; a data set's id prefixes model ids when there are several."""
    squeeze = {"name": "squeeze", "squeezers": ["bits:4"]}
    refuse(capsys, work, doc(defenses=[{**squeeze, "id": "../../../../escape"}]), "defenses[0]: id")
    refuse(capsys, work, doc(models=[{**BASE["models"][0], "id": "../../x"}]), "models[0]: id")
    refuse(capsys, work, doc(models=[{**BASE["models"][0], "id": "m:1"}]), "':'")
    refuse(capsys, work, doc(models=[{**BASE["models"][0], "sweep": {"train.optimizer": ["../../../sgd"]}}]),
           "sweep point")
    refuse(capsys, work, doc(data=[{"name": "digits", "id": "a"}, {"name": "folder:../../../x"}]), "data[1] id")
    refuse(capsys, work, doc(attacks=[{"name": "fgsm", "id": "/abs"}]), "attacks[0]: id")


def test_sweep_ids_with_plain_values_are_kept(work):
    """Sweep ids such as ``mct(sigma=0.1)`` stay allowed (and deterministic)."""
    from robustlab.experiment import ExperimentSpec

    spec = ExperimentSpec.from_dict(doc(models=[{"id": "mct", "model": {"backbone": "mlp", "head": "mct"},
                                                 "sweep": {"objective_args.sigma": [0.05, 0.1]}}]))
    assert [m.id for m in spec.models] == ["mct(sigma=0.05)", "mct(sigma=0.1)"]


def test_executor_storage_must_be_absolute(capsys, work):
    refuse(capsys, work, doc(executor={"name": "ray", "storage": "../../shared"}), "absolute")


# ------------------------------------------------------------------ unbounded work
def _laughs(levels: int, width: int = 10) -> str:
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nname: *l{levels - 1}\n"


def test_billion_laughs_recursion_and_depth_are_refused_quickly(capsys, work):
    refuse(capsys, work, _laughs(9), "100,000 values", budget=5)
    refuse(capsys, work, yaml.safe_dump(doc()) + "eps: &e [0, 0.1, *e]\n", "recursive alias", budget=5)
    refuse(capsys, work, "name: " + "[" * 3000 + "]" * 3000 + "\n", "nesting deeper", budget=5)
    refuse(capsys, work, yaml.safe_dump(doc()) + "batch_size: " + "9" * 5000 + "\n", "cannot read", budget=5)
    refuse(capsys, work, "name: !!python/object/apply:os.system ['echo hi']\n", "not valid YAML", budget=5)


def test_plan_size_is_counted_before_anything_runs(capsys, work):
    """A 1000 x 1000 sweep, 200,000 eps values and a grid over the cell limit are refused with
    the count; the limits are raised with flags."""
    sweep = {"train.lr": [0.001 * (i + 1) for i in range(1000)], "train.seed": list(range(1000))}
    refuse(capsys, work, doc(models=[{**BASE["models"][0], "sweep": sweep}]), "1,000,000 is more than the limit of 500",
           budget=10)
    refuse(capsys, work, doc(eps=[i / 1e6 for i in range(200_000)]), "--max-values", budget=10)
    refuse(capsys, work, doc(eps=[0, 0.1, 0.2]), "3 evaluation cells", "--max-cells", "2")
    refuse(capsys, work, doc(models=[{**BASE["models"][0], "sweep": {"train.seed": [0, 1, 2]}}]),
           "3 is more than the limit of 2", "--max-trainings", "2")
    refuse(capsys, work, doc(defenses=[{"name": "squeeze", "squeezers": ["bits:4"]}]), "builds 1 defended",
           "--max-trainings", "1")


def test_plan_size_matches_the_plan():
    """`plan_size` counts exactly what `plan_experiment` builds (defenses, transfers, filters)."""
    from robustlab.experiment import ExperimentSpec
    from robustlab.experiment.plan import plan_experiment, plan_size

    spec = ExperimentSpec.from_dict(doc(
        models=[{"id": "a", "model": {"backbone": "mlp"}}, {"id": "b", "model": {"backbone": "mlp"}}],
        defenses=[{"name": "squeeze", "squeezers": ["bits:4"], "non_adaptive": True, "models": ["a"]}],
        attacks=["fgsm", {"name": "pgd", "steps": 2, "eps": [0.1, 0.2, 0.3], "models": ["b"]}],
        transfer={"sources": ["a", "b"], "targets": ["a", "b"], "attacks": ["fgsm"]}))
    plan = plan_experiment(spec)
    assert plan_size(spec) == {**plan.counts(), "defenses": len(plan.defenses)}


# ------------------------------------------------------------------ claims, plugins, executor values
@pytest.mark.parametrize("claim,match", [
    ({"eps": "abc", "published": 0.5}, "eps"),
    ({"eps": 0.1, "published": "high"}, "published"),
    ({"eps": 0.1, "published": [0.5]}, "published"),
    ({"eps": 0.1, "published": float("nan")}, "published"),
    ({"eps": -1, "published": 0.5}, "eps"),
])
def test_bad_claims_are_one_line(capsys, work, claim, match):
    refuse(capsys, work, doc(claims=[{"model": "m", "attack": "fgsm", **claim}]), match)


@pytest.mark.parametrize("source,match", [
    ("raise RuntimeError('plugin broke')\n", "plugin broke"),
    ("def broken(:\n", "SyntaxError"),
    ("import sys\nsys.exit(0)\n", "SystemExit"),
    ("import no_such_module_anywhere_i19a\n", "ModuleNotFoundError"),
])
def test_plugins_that_fail_to_import_are_one_line(capsys, work, monkeypatch, source, match):
    name = f"i19a_plugin_{abs(hash(source)) % 10**8}"
    plugins = work.parent / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(plugins))
    refuse(capsys, work, doc(plugins=[name]), match)


@pytest.mark.parametrize("plugins", [[".relative"], ["..pkg"], ["a/b"], ["os:path"], [""], [1], "mod", [["x"]]])
def test_plugin_names_must_be_absolute_module_names(capsys, work, plugins):
    refuse(capsys, work, doc(plugins=plugins), "plugins")


@pytest.mark.parametrize("executor", [{"name": "ray", "max_retries": "a"}, {"name": "ray", "local_cpus": 1.5},
                                      {"name": "ray", "num_cpus": float("nan")}, {"name": ["ray"]},
                                      {"name": "ray", "address": {"a": 1}}, {"name": "ray", "connect_timeout": 0},
                                      {"name": "ray", "storage": ["/x"]}, {"name": "ray", "bogus": 1}, 3])
def test_bad_executor_values_are_one_line(capsys, work, executor):
    refuse(capsys, work, doc(executor=executor), "executor")


# ------------------------------------------------------------------ a Ray address that does not answer
def test_probe_refuses_silent_and_closed_addresses_within_the_timeout():
    """A port that accepts and says nothing fails after `connect_timeout`; a closed port at
    once; a server that answers the HTTP/2 preface with SETTINGS (as Ray's gRPC GCS does) passes."""
    from robustlab.core.errors import ConfigError
    from robustlab.experiment.executors.ray_executor import probe

    def serve(reply: bytes) -> int:
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)

        def answer() -> None:
            conn, _ = srv.accept()
            conn.recv(64)
            if reply:
                conn.sendall(reply)
            time.sleep(3)
            conn.close()
            srv.close()

        threading.Thread(target=answer, daemon=True).start()
        return srv.getsockname()[1]

    start = time.monotonic()
    with pytest.raises(ConfigError, match="no answer within 1 s"):
        probe(f"127.0.0.1:{serve(b'')}", 1.0)
    assert time.monotonic() - start < 2.5
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(ConfigError, match="Connection refused"):
        probe(f"ray://127.0.0.1:{port}", 1.0)
    with pytest.raises(ConfigError, match="does not answer like a Ray cluster"):
        probe(f"127.0.0.1:{serve(b'HTTP/1.1 400 Bad Request' + bytes(20))}", 1.0)
    probe(f"127.0.0.1:{serve(bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))}", 1.0)
    probe("auto", 1.0)  # no port: left to Ray


def _subprocess(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    import robustlab

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(robustlab.__file__).parents[1])}
    return subprocess.run([sys.executable, "-m", "robustlab", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


def test_subprocess_unreachable_ray_address_and_traversal(tmp_path):
    """Through the real CLI: `--address 127.0.0.1:1` fails at once (Ray itself retried for
    minutes) and `name: ../../escape` writes nothing anywhere; exit 2 and one line each."""
    work = tmp_path / "a" / "work"
    work.mkdir(parents=True)
    (work / "exp.yaml").write_text(yaml.safe_dump(BASE))
    (work / "bad.yaml").write_text(yaml.safe_dump(doc(name="../../escape")))
    before = snapshot(tmp_path)
    start = time.monotonic()
    done = _subprocess(["run", "exp.yaml", "--executor", "ray", "--address", "127.0.0.1:1",
                        "--connect-timeout", "5"], work)
    assert time.monotonic() - start < 60
    assert done.returncode == 2 and "cannot join the Ray cluster at 127.0.0.1:1" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    done = _subprocess(["run", "bad.yaml"], work)
    assert done.returncode == 2 and "plain name" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert snapshot(tmp_path) == before
