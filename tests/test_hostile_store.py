"""Hostile files and faults on the store, `--module`, checkpoints and processes: every case ends in
one clear line, the right exit code, no traceback, no hang, and (on refusal) nothing written or
changed, byte for byte and name for name, under the folders involved.

Processes are real where the behaviour is about processes (two writers at once, Ctrl-C, a full
disk); a fault is injected into the child (a pause before the database is linked into place, a
SIGINT after the n-th stored row) where timing would otherwise decide the interleaving.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from robustlab.cli.app import main
from robustlab.core.runtime import seeded
from robustlab.data import load_dataset
from robustlab.models import build_model
from robustlab.store.checkpoints import save_checkpoint, weights_file
from robustlab.store.results import ResultStore
from robustlab.train import TrainConfig, train

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
EVAL = ["evaluate", "--attack", "fgsm", "--eps", "0", "--eps", "0.1", "--n-eval", "20"]


def tree(*roots: Path) -> dict[str, str]:
    """Every path under `roots` (hidden ones included) with the digest of its bytes."""
    out: dict[str, str] = {}
    for root in roots:
        for p in [root, *sorted(root.rglob("*"))] if root.is_dir() else [root]:
            if p.exists():
                out[str(p)] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def refused(capsys, args: list, match: str, *watch: Path, code: int = 2) -> str:
    """Run the CLI in-process: one `error:` line naming `match`, exit `code`, `watch` unchanged."""
    before = tree(*watch)
    rc = main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    assert rc == code, f"exit {rc} for {args}: {err}"
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert match.lower() in err.lower(), f"{match!r} not in {err!r}"
    assert tree(*watch) == before, f"{args} changed {watch}"
    return err


def cli(*args: object, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robustlab", *map(str, args)], capture_output=True, text=True,
                          env=ENV, timeout=timeout, **kw)


def store_files(run_dir: Path) -> list[str]:
    """The run directory's files but the report `evaluate` writes beside the store."""
    return sorted(p.name for p in run_dir.iterdir() if not p.name.startswith(("report.", "plot-")))


def rows_by_model(run_dir: Path) -> dict[str, int]:
    with ResultStore(run_dir, readonly=True) as store:
        rows = store.rows()
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.key.model] = counts.get(row.key.model, 0) + 1
    return counts


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Two small MLPs (1 epoch on digits, different seeds) saved as checkpoints."""
    root = tmp_path_factory.mktemp("hostile")
    data = load_dataset("digits", seed=0)
    meta = {"data": {"name": "digits", "root": None, "resize": None, "seed": 0, "train_per_class": None}}
    paths = []
    for seed in (0, 1):
        with seeded(seed):
            model = build_model({"backbone": "mlp", "head": "softmax", "num_classes": 10, "input_shape": [1, 8, 8]})
        train(model, data.x_train, data.y_train, TrainConfig(epochs=1, optimizer="adam", lr=0.003, seed=seed))
        paths.append(save_checkpoint(model, root / f"ck{seed}", metadata=meta))
    return paths


@pytest.fixture(scope="module")
def good_run(ckpts, tmp_path_factory):
    """A run directory holding an FGSM evaluation of the first checkpoint (WAL side files gone)."""
    path = tmp_path_factory.mktemp("hostile-run") / "run"
    assert main([*EVAL, "--model", str(ckpts[0]), "--out", str(path), "--json"]) == 0
    assert store_files(path) == ["results.sqlite"]
    return path


# ---------------------------------------------------------------- refused databases


def _copy(good: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    (dest / "results.sqlite").write_bytes((good / "results.sqlite").read_bytes())
    return dest


def _sql(run: Path, *statements: str) -> None:
    conn = sqlite3.connect(run / "results.sqlite")
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()
    for side in ("-wal", "-shm"):
        assert not Path(f"{run / 'results.sqlite'}{side}").exists()


def _wal_db(run: Path, script: str) -> None:
    """A database in WAL mode (as robustlab writes them) built by `script`, side files closed."""
    run.mkdir(parents=True)
    conn = sqlite3.connect(run / "results.sqlite")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(script)
    conn.close()


HOSTILE = {
    "truncated": (lambda good, d: (d.mkdir(), (d / "results.sqlite").write_bytes(
        (good / "results.sqlite").read_bytes()[:8192])), "truncated"),
    "header only": (lambda good, d: (d.mkdir(), (d / "results.sqlite").write_bytes(
        (good / "results.sqlite").read_bytes()[:100])), "truncated"),
    "old schema": (lambda good, d: _wal_db(d, "CREATE TABLE results (model TEXT, metrics TEXT); "
                                           "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"),
                   "older robustlab"),
    "foreign": (lambda good, d: _wal_db(d, "CREATE TABLE songs (title TEXT); INSERT INTO songs VALUES ('x');"),
                "not a robustlab"),
    "dropped table": (lambda good, d: _sql(_copy(good, d), "DROP TABLE results"), "table results is missing"),
    "dropped column": (lambda good, d: _sql(_copy(good, d), "ALTER TABLE results DROP COLUMN subset"), "columns"),
    "non-JSON metrics": (lambda good, d: _sql(_copy(good, d), "UPDATE results SET metrics = 'not json{'"),
                         "damaged"),
    "JSON list rows": (lambda good, d: _sql(_copy(good, d), "UPDATE results SET per_sample = '[1, 2]'"),
                       "damaged"),
    "non-JSON meta": (lambda good, d: _sql(_copy(good, d), "INSERT OR REPLACE INTO meta VALUES ('models', '{oops')"),
                      "meta entry"),
    "typed keys": (lambda good, d: _sql(_copy(good, d), "UPDATE results SET eps = 'abc'"), "damaged"),
    "newer schema": (lambda good, d: _sql(_copy(good, d), "UPDATE meta SET value = '9' WHERE key = "
                                          "'robustlab_schema'"), "schema 9"),
    "invalid UTF-8 key": (lambda good, d: _sql(_copy(good, d), "UPDATE results SET model_digest = "
                                               "CAST(X'61FF62' AS TEXT)"), "not UTF-8"),
    "garbage page": (lambda good, d: (_copy(good, d), _scribble(d / "results.sqlite")), "damaged"),
}


def _scribble(db: Path) -> None:
    data = bytearray(db.read_bytes())
    data[4096 + 8: 4096 + 600] = bytes(range(256)) * 2 + bytes(80)  # the second page's cells
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_refused_databases_stay_byte_identical_with_no_side_files(capsys, ckpts, good_run, tmp_path, case):
    """`evaluate` and `report` refuse the file with one line; the file, and the folder's listing
    (no -wal / -shm left beside it), are exactly as they were."""
    make, match = HOSTILE[case]
    run = tmp_path / "run"
    make(good_run, run)
    assert store_files(run) == ["results.sqlite"]
    refused(capsys, [*EVAL, "--model", ckpts[0], "--out", run], match, run)
    refused(capsys, ["report", run], match, run)
    assert store_files(run) == ["results.sqlite"]


def test_random_corruptions_are_refused_cleanly_or_harmless(capsys, ckpts, good_run, tmp_path):
    """24 seeded corruptions (flipped bytes, truncation, a scrambled block, header fields): each run
    either succeeds (the damage touched nothing that matters) or is refused with one `error:` line
    that leaves the file and the folder's listing as they were."""
    import random

    rng = random.Random(0)
    good = (good_run / "results.sqlite").read_bytes()
    for trial in range(24):
        data = bytearray(good)
        if trial % 4 == 0:
            for _ in range(rng.randint(1, 20)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif trial % 4 == 1:
            data = data[: rng.randrange(len(data))]
        elif trial % 4 == 2:
            at = rng.randrange(100, len(data) - 512)
            data[at: at + 512] = rng.randbytes(512)
        else:
            data[rng.randrange(16, 100)] = rng.randrange(256)
        run = tmp_path / str(trial)
        run.mkdir()
        (run / "results.sqlite").write_bytes(bytes(data))
        for args in (["report", run], [*EVAL, "--model", ckpts[0], "--out", run]):
            before = tree(run)
            rc = main([str(a) for a in args])
            err = capsys.readouterr().err.strip()
            if rc != 0:
                assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), (trial, err)
                assert tree(run) == before, (trial, args[0], err)


def test_a_fifo_or_a_directory_beside_the_database_is_refused_without_blocking(ckpts, good_run, tmp_path):
    """A FIFO named results.sqlite would block a read forever; a -wal that is a directory makes
    SQLite fail obscurely: both are one line, at once."""
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "results.sqlite")
    waldir = _copy(good_run, tmp_path / "waldir")
    (waldir / "results.sqlite-wal").mkdir()
    for run, name in ((fifo, "results.sqlite"), (waldir, "results.sqlite-wal")):
        for args in ([*EVAL, "--model", ckpts[0], "--out", run], ["report", run]):
            done = cli(*args, timeout=120)
            assert done.returncode == 2, done.stderr
            assert done.stderr.strip() == f"error: {run / name} is not a regular file: not part of a robustlab " \
                                          "results database"


def test_a_sound_database_is_still_extended(capsys, ckpts, good_run, tmp_path):
    run = _copy(good_run, tmp_path / "run")
    assert main([*EVAL, "--model", str(ckpts[1]), "--out", str(run), "--json"]) == 0
    assert sorted(rows_by_model(run).values()) == [2, 2]


# ---------------------------------------------------------------- --module


FACTORIES = """
import sys
import torch

def raises():
    raise ValueError("boom")

def exits():
    sys.exit(0)

def needs_an_argument(width):
    return torch.nn.Linear(64, width)

def not_a_module():
    return 3

def wrong_input():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(100, 10))

def fine():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
"""


@pytest.mark.parametrize(
    "spec,match",
    [
        ("hostile_factories:raises", "raised ValueError: boom"),
        ("hostile_factories.py:raises", "raised ValueError: boom"),
        ("hostile_factories:exits", "called exit(0)"),
        ("builtins:exit", "called exit(None)"),
        ("hostile_factories:needs_an_argument", "raised TypeError"),
        ("hostile_factories:not_a_module", "not an nn.Module"),
        ("hostile_factories:wrong_input", "fails on images of shape (1, 8, 8)"),
        ("hostile_syntax:make", "syntax error (hostile_syntax.py, line 1)"),
        ("hostile_syntax.py:make", "syntax error"),
        ("hostile_import_fails:make", "importing it raised RuntimeError: at import"),
        ("hostile_import_exits:make", "importing it called exit(3)"),
        ("..pkg:make_net", "not an absolute module name"),
        (".hostile_factories:fine", "not an absolute module name"),
        ("hostile_factories:fine.x", "not a Python name"),
        ("no_such_module_here:make", "cannot import"),
        ("hostile_factories:", "must look like"),
    ],
)
def test_module_failures_are_one_line(capsys, monkeypatch, tmp_path, spec, match):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "hostile_factories.py").write_text(FACTORIES)
    (tmp_path / "hostile_syntax.py").write_text("def make(:\n")
    (tmp_path / "hostile_import_fails.py").write_text("raise RuntimeError('at import')\n")
    (tmp_path / "hostile_import_exits.py").write_text("import sys\nsys.exit(3)\n")
    for name in list(sys.modules):
        if name.startswith("hostile_"):
            monkeypatch.delitem(sys.modules, name)
    run = tmp_path / "run"
    refused(capsys, [*EVAL, "--data", "digits", "--module", spec, "--untrained", "--out", run], match, tmp_path)
    assert not run.exists()


def test_builtins_exit_is_refused_through_the_real_entry_point(tmp_path):
    done = cli(*EVAL, "--data", "digits", "--module", "builtins:exit", "--untrained", "--out", tmp_path / "run")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().startswith("error: --module builtins:exit") and len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- two writers at once

PAUSED_LINK = """
import os, sys, time
from pathlib import Path
link = os.link
def slow_link(src, dst, *a, **k):  # the database is made, not yet in place: let the other process look
    Path(sys.argv[1]).touch()
    while not Path(sys.argv[2]).exists():
        time.sleep(0.02)
    return link(src, dst, *a, **k)
os.link = slow_link
from robustlab.cli.app import main
sys.exit(main(sys.argv[3:]))
"""


def test_second_writer_during_the_first_ones_create_waits_and_both_rows_land(ckpts, tmp_path):
    """Process A is held between making its database and linking it into place; process B, started
    then, must not take A's temporary file for foreign content: both succeed, both models land."""
    script = tmp_path / "paused.py"
    script.write_text(PAUSED_LINK)
    run = tmp_path / "run"
    ready, go = tmp_path / "ready", tmp_path / "go"
    first = subprocess.Popen([sys.executable, str(script), str(ready), str(go), *EVAL, "--model", str(ckpts[0]),
                              "--out", str(run), "--json"], env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while not ready.exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert ready.exists(), first.communicate()[1]
        assert any(p.name.startswith(".results.sqlite.") for p in run.iterdir())  # A's database in the making
        second = cli(*EVAL, "--model", ckpts[1], "--out", run, "--json")
        assert second.returncode == 0, second.stderr
    finally:
        go.touch()
        _, err = first.communicate(timeout=240)
    assert first.returncode == 0, err
    assert store_files(run) == ["results.sqlite"]  # no temporary left
    assert sorted(rows_by_model(run).values()) == [2, 2]


GATED = """
import sys, time
from robustlab.cli.app import _app, main
_app()  # every import done: both processes reach the store together
at = float(sys.argv[1])
while time.time() < at:
    time.sleep(0.001)
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_two_writers_started_together_both_land(ckpts, tmp_path):
    """Three trials of two processes released at the same instant on a fresh run directory."""
    script = tmp_path / "gated.py"
    script.write_text(GATED)
    for trial in range(3):
        run = tmp_path / f"run{trial}"
        at = str(time.time() + 8)
        procs = [subprocess.Popen([sys.executable, str(script), at, *EVAL, "--model", str(ck), "--out", str(run),
                                   "--json"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for ck in ckpts]
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
        assert sorted(rows_by_model(run).values()) == [2, 2], trial


# ---------------------------------------------------------------- Ctrl-C

INTERRUPT_AFTER = """
import os, signal, sys
import robustlab.store.results as results
import robustlab.store.checkpoints as checkpoints
from robustlab.cli.app import run
where, count = sys.argv[1], int(sys.argv[2])
seen = [0]
def hit():
    seen[0] += 1
    if seen[0] == count:
        os.kill(os.getpid(), signal.SIGINT)
if where == "put":  # after the n-th stored row (a finished cell)
    put = results.ResultStore.put
    def put_then_interrupt(self, *a, **k):
        done = put(self, *a, **k)
        hit()
        return done
    results.ResultStore.put = put_then_interrupt
elif where == "close":  # after the last cell, as the store closes
    close = results.ResultStore.close
    def close_then_interrupt(self):
        close(self)
        hit()
    results.ResultStore.close = close_then_interrupt
elif where == "save":  # while the checkpoint's weights are written
    publish = checkpoints.publish
    def interrupt_then_publish(files):
        hit()
        return publish(files)
    checkpoints.publish = interrupt_then_publish
sys.argv = ["robustlab", *sys.argv[3:]]
run()
"""


def _interrupted(tmp_path: Path, where: str, count: int, *args: object) -> subprocess.CompletedProcess:
    script = tmp_path / "interrupt.py"
    script.write_text(INTERRUPT_AFTER)
    return subprocess.run([sys.executable, str(script), where, str(count), *map(str, args)], capture_output=True,
                          text=True, env=ENV, timeout=300)


@pytest.mark.parametrize("where,count", [("put", 3), ("close", 1)])
def test_ctrl_c_during_evaluate_says_what_was_kept_and_resumes(ckpts, tmp_path, where, count):
    run = tmp_path / "run"
    args = [*EVAL, "--eps", "0.2", "--model", ckpts[0], "--out", run, "--json"]
    done = _interrupted(tmp_path, where, count, *args)
    assert done.returncode == 130, done.stderr
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr and len([x for x in lines if x.startswith("interrupted")]) == 1
    assert lines[-1] == (f"interrupted: every finished cell is kept in {run}; run the same command again to resume "
                         "(stored cells are not recomputed)")
    kept = rows_by_model(run)
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    assert sum(rows_by_model(run).values()) == 3 and sum(kept.values()) <= 3


def test_ctrl_c_during_run_says_what_was_kept(tmp_path):
    spec = tmp_path / "exp.yaml"
    spec.write_text("name: x\ndata: {name: digits, n_eval: 20}\nmodels: [{id: m, model: {backbone: mlp}, "
                    "train: {epochs: 1}}]\nattacks: [fgsm]\neps: [0, 0.1]\n")
    run = tmp_path / "run"
    done = _interrupted(tmp_path, "put", 1, "run", spec, "--out", run, "--json")
    assert done.returncode == 130 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"interrupted: finished trainings, defenses and cells are kept in {run}; run the same command again to "
        "resume (what is stored is not recomputed)")


@pytest.mark.parametrize("delay", [0.3, 0.6, 1.0])
def test_ctrl_c_while_python_loads_is_one_line(tmp_path, delay):
    """SIGINT while torch, scipy and the commands are still being imported: one line, exit code 130
    (an interrupt inside numpy's import used to leave it half-loaded: "internal error: RecursionError")."""
    proc = subprocess.Popen([sys.executable, "-m", "robustlab", *EVAL, "--data", "digits", "--out",
                             str(tmp_path / "run")], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip() == "interrupted" and not (tmp_path / "run").exists()


def test_ctrl_c_during_train_saves_nothing_and_says_so(tmp_path):
    out = tmp_path / "ck"
    done = _interrupted(tmp_path, "save", 1, "train", "--backbone", "mlp", "--epochs", "1", "--out", out)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"interrupted: no checkpoint was written to {out} (training does not resume: run the command again)")
    assert not out.exists()  # the folder the save made is gone with its temporaries


# ---------------------------------------------------------------- checkpoints: leftovers and a full disk


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_saves_temporary_is_removed_and_a_live_ones_kept(tmp_path):
    out = tmp_path / "ck"
    out.mkdir()
    stale = out / f".weights-{_dead_pid()}.tmp"
    stale.write_bytes(b"half a safetensors file")
    live = out / f".weights-{os.getppid()}.tmp"  # a running process (pytest's parent) may still be writing
    live.write_bytes(b"being written")
    done = cli("train", "--backbone", "mlp", "--epochs", "1", "--out", out)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(["config.json", weights_file(out).name, live.name])


def test_a_killed_creates_temporary_database_is_not_foreign_content(capsys, ckpts, tmp_path):
    """`kill -9` while the database was being made leaves `.results.sqlite.<pid>.tmp`: the rerun
    is not refused as "not empty", and removes it."""
    run = tmp_path / "run"
    run.mkdir()
    (run / f".results.sqlite.{_dead_pid()}.tmp").write_bytes(b"SQLite format 3\x00 half made")
    assert main([*EVAL, "--model", str(ckpts[0]), "--out", str(run), "--json"]) == 0, capsys.readouterr().err
    assert store_files(run) == ["results.sqlite"]


def test_a_failed_save_leaves_the_folder_as_it_was(monkeypatch, tmp_path):
    """A full disk at the config's write (the weights already in place): no new weights file stays
    beside the old checkpoint, and a folder the save created is removed."""
    import robustlab.store.checkpoints as checkpoints

    with seeded(0):
        model = build_model({"backbone": "mlp", "head": "softmax", "num_classes": 10, "input_shape": [1, 8, 8]})
    old = save_checkpoint(model, tmp_path / "old")
    before = tree(tmp_path)

    def full(files):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints, "publish", full)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # other weights: another weights file
    for target in (old, tmp_path / "new" / "deeper"):
        with pytest.raises(OSError) as info:
            save_checkpoint(model, target, overwrite=True)
        assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
        assert tree(tmp_path) == before



def test_train_on_a_full_disk_is_one_line_and_writes_nothing(tiny_fs):
    mnt = tiny_fs
    cmd = (f"mount -t tmpfs -o size=64k tmpfs {mnt} && {sys.executable} -m robustlab train --backbone mlp "
           f"--epochs 1 --out {mnt}/ck; echo rc=$?; ls -A {mnt}")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", cmd], capture_output=True, text=True, env=ENV, timeout=300)
    assert "rc=2" in done.stdout, done.stdout + done.stderr
    errors = [x for x in done.stderr.splitlines() if x.startswith(("error", "internal"))]
    assert errors == [f"error: disk full: {mnt}/ck: No space left on device"], done.stderr
    assert done.stdout.strip().splitlines()[1:] == []  # the file system is empty: no folder, no temporary


def test_hostile_checkpoint_folders(capsys, ckpts, tmp_path):
    """A checkpoint folder with wrong files: refused with one line, nothing changed."""
    run = tmp_path / "run"
    src = ckpts[0]
    cases = {
        "garbage config": (lambda d: (d / "config.json").write_bytes(os.urandom(64)), "config.json"),
        "config names another file": (lambda d: (d / "config.json").write_text(json.dumps({
            **json.loads((src / "config.json").read_text()),
            "weights": {"file": "../../etc/passwd", "sha256": "0"}})), "bad weights file name"),
        "weights replaced by a pickle": (lambda d: weights_file(d).write_bytes(b"\x80\x04K\x01."), "pickle"),
        "weights truncated": (lambda d: weights_file(d).write_bytes(weights_file(d).read_bytes()[:50]),
                              "safetensors"),
        "no weights": (lambda d: weights_file(d).unlink(), "has no"),
        "config nested too deep": (lambda d: (d / "config.json").write_text("[" * 100_000), "nested too deep"),
    }
    for name, (damage, match) in cases.items():
        bad = tmp_path / name.replace(" ", "-")
        bad.mkdir()
        for f in src.iterdir():
            (bad / f.name).write_bytes(f.read_bytes())
        damage(bad)
        refused(capsys, [*EVAL, "--model", bad, "--out", run], match, bad, tmp_path)
        assert not run.exists()
