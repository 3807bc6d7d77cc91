"""Bad input through the CLI: every case ends in one clear line on stderr, a non-zero exit
code, no traceback, and nothing created or changed under the run / output directories.

Most cases run in-process through `robustlab.cli.app.main` (the same code path as the
console script, minus the interpreter start); `test_real_subprocess_exit_codes` runs a few
through `python -m robustlab` to show that the exit code and the one-line message are real.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robustlab.cli.app import main
from robustlab.core.runtime import seeded
from robustlab.data import load_dataset, write_image
from robustlab.models import build_model
from robustlab.store.checkpoints import save_checkpoint, weights_file
from robustlab.train import TrainConfig, train


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file under `roots` with the digest of its bytes (and every directory)."""
    out: dict[str, str] = {}
    for root in roots:
        if root.is_file():
            out[str(root)] = hashlib.sha256(root.read_bytes()).hexdigest()
        elif root.is_dir():
            out[str(root)] = "dir"
            for p in sorted(root.rglob("*")):
                out[str(p)] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def check_refused(capsys, args: list[str], match: str, *watch: Path, code: int = 2) -> str:
    """Run the CLI; assert one `error:` line naming `match`, exit `code`, nothing changed under `watch`."""
    before = snapshot(*watch)
    exists = {str(w): w.exists() for w in watch}
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert rc == code, f"exit {rc} for {args}: {err}"
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and "Traceback" not in err and "internal error" not in err, err
    assert match.lower() in err.lower(), f"{match!r} not in {err!r}"
    assert snapshot(*watch) == before, f"files changed by {args}"
    assert {str(w): w.exists() for w in watch} == exists
    return err


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A small MLP trained 2 epochs on digits, saved as a checkpoint with its data in the metadata."""
    root = tmp_path_factory.mktemp("fuzz")
    data = load_dataset("digits", seed=0)
    with seeded(0):
        model = build_model({"backbone": "mlp", "head": "softmax", "num_classes": 10, "input_shape": [1, 8, 8]})
    train(model, data.x_train, data.y_train, TrainConfig(epochs=2, optimizer="adam", lr=0.003, seed=0))
    meta = {"data": {"name": "digits", "root": None, "resize": None, "seed": 0, "train_per_class": None}}
    return save_checkpoint(model, root / "ckpt", metadata=meta)


@pytest.fixture(scope="module")
def run_dir(ckpt, tmp_path_factory):
    """A run directory holding an FGSM evaluation of `ckpt` on 40 digits."""
    path = tmp_path_factory.mktemp("fuzz-run") / "run"
    assert main(["evaluate", "--model", str(ckpt), "--attack", "fgsm", "--eps", "0", "--eps", "0.1",
                 "--n-eval", "40", "--out", str(path), "--json"]) == 0
    return path


EVAL = ["evaluate", "--attack", "pgd", "--steps", "2", "--n-eval", "20"]


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--eps", "-0.1"], "eps"),
        (["--eps", "nan"], "eps"),
        (["--eps", "inf"], "finite"),
        (["--eps", "0.1", "-p", "steps=0"], "steps"),
        (["--eps", "0.1", "--restarts", "-1"], "restarts"),
        (["--eps", "0.1", "--norm", "l3"], "norm"),
        (["--eps", "0.1", "-p", "steps=2.7"], "integer"),
        (["--eps", "0.1", "-p", "random_start=maybe"], "random_start"),
        (["--eps", "0.1", "--n-eval", "0"], "n-eval"),
        (["--eps", "0.1", "-p", "stepz=3"], "stepz"),
        (["--eps", "0.1", "--attack", "nope"], "unknown attack"),
        (["--eps", "0.1", "--attack", "transfer", "-p", "source=/nonexistent/ckpt"], "source"),
        (["--eps", "0.1", "--eps", "0.1"], "repeats"),
    ],
)
def test_evaluate_bad_values_write_nothing(capsys, ckpt, tmp_path, extra, match):
    target = tmp_path / "run"
    check_refused(capsys, [*EVAL, "--model", ckpt, "--out", target, *extra], match, target, ckpt)
    assert not target.exists()


def _folder(root: Path, classes: int, size: int) -> Path:
    g = torch.Generator().manual_seed(0)
    for c in range(classes):
        for i in range(3):
            write_image(torch.rand(1, size, size, generator=g), root / f"c{c:02d}" / f"{i}.png")
    return root


def test_model_and_data_that_do_not_fit(capsys, ckpt, tmp_path):
    target = tmp_path / "run"
    shape = _folder(tmp_path / "big", 3, 16)
    check_refused(capsys, [*EVAL, "--model", ckpt, "--eps", "0.1", "--data", f"folder:{shape}", "--out", target],
                  "shape", target, ckpt)
    many = _folder(tmp_path / "many", 12, 8)
    check_refused(capsys, [*EVAL, "--model", ckpt, "--eps", "0.1", "--data", f"folder:{many}", "--out", target],
                  "classes", target, ckpt)


def _edit_config(ckpt: Path, dest: Path, change) -> Path:
    import shutil

    shutil.copytree(ckpt, dest)
    doc = json.loads((dest / "config.json").read_text())
    change(doc)
    (dest / "config.json").write_text(json.dumps(doc))
    return dest


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda d: d["model"].__setitem__("input_shape", 8), "model config"),
        (lambda d: d.__setitem__("metadata", None), "--data"),
        (lambda d: d.__setitem__("metadata", "text"), "metadata"),
        (lambda d: d["metadata"].__setitem__("data", "digits"), "metadata.data"),
        (lambda d: d["metadata"].__setitem__("data", {"name": "digits", "seed": "x"}), "seed"),
    ],
)
def test_broken_checkpoint_configs(capsys, ckpt, tmp_path, change, match):
    bad = _edit_config(ckpt, tmp_path / "bad", change)
    target = tmp_path / "run"
    check_refused(capsys, [*EVAL, "--model", bad, "--eps", "0.1", "--out", target], match, target, bad)


def test_run_dir_that_is_not_a_run_dir(capsys, ckpt, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    check_refused(capsys, [*EVAL, "--model", ckpt, "--eps", "0.1", "--out", notes], "is a file", notes)
    other = tmp_path / "photos"
    other.mkdir()
    (other / "a.jpg").write_bytes(b"jpeg")
    check_refused(capsys, [*EVAL, "--model", ckpt, "--eps", "0.1", "--out", other], "not empty", other)
    empty_db = tmp_path / "empty"
    empty_db.mkdir()
    (empty_db / "results.sqlite").write_bytes(b"")
    check_refused(capsys, [*EVAL, "--model", ckpt, "--eps", "0.1", "--out", empty_db], "empty file", empty_db)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    conn = sqlite3.connect(foreign / "results.sqlite")
    conn.execute("CREATE TABLE songs (title TEXT)")
    conn.commit()
    conn.close()
    check_refused(capsys, [*EVAL, "--model", ckpt, "--eps", "0.1", "--out", foreign], "not a robustlab", foreign)
    long = tmp_path / ("x" * 300)
    check_refused(capsys, [*EVAL, "--model", ckpt, "--eps", "0.1", "--out", long], "too long", tmp_path / "x")


def test_old_schema_is_refused(capsys, ckpt, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    conn = sqlite3.connect(old / "results.sqlite")
    conn.executescript(
        "CREATE TABLE results (model TEXT, defense TEXT, attack TEXT, eps REAL, subset TEXT, metrics TEXT, "
        "per_sample TEXT, created REAL, PRIMARY KEY (model, defense, attack, eps, subset));"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    )
    conn.close()
    check_refused(capsys, [*EVAL, "--model", ckpt, "--eps", "0.1", "--out", old], "older robustlab", old)
    check_refused(capsys, ["report", old], "older robustlab", old)


def test_report_never_writes_into_foreign_files(capsys, tmp_path):
    zero = tmp_path / "zero"
    zero.mkdir()
    (zero / "results.sqlite").write_bytes(b"")
    check_refused(capsys, ["report", zero], "empty file", zero)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    conn = sqlite3.connect(foreign / "results.sqlite")
    conn.execute("CREATE TABLE t (a)")
    conn.commit()
    conn.close()
    check_refused(capsys, ["report", foreign], "not a robustlab", foreign)
    check_refused(capsys, ["report", tmp_path / "missing"], "holds no results", tmp_path / "missing")


def test_checkpoints_are_never_overwritten_silently(capsys, ckpt, tmp_path):
    check_refused(capsys, ["train", "--backbone", "mlp", "--epochs", "1", "--out", ckpt], "--overwrite", ckpt)
    afile = tmp_path / "file.txt"
    afile.write_text("keep me")
    check_refused(capsys, ["train", "--backbone", "mlp", "--epochs", "1", "--out", afile], "is a file", afile)
    check_refused(capsys, ["defend", "svdd", "--model", ckpt, "--out", ckpt, "--svdd-epochs", "1"],
                  "input checkpoint", ckpt)
    other = tmp_path / "other"
    (other / "x").mkdir(parents=True)
    check_refused(capsys, ["defend", "svdd", "--model", ckpt, "--out", other], "not a robustlab checkpoint",
                  other, ckpt)


@pytest.mark.parametrize(
    "body,match",
    [
        ("eps: 0.1", "eps"),
        ("eps: [0.1, abc]", "eps[1]"),
        ("eps: [-0.1]", "eps[0]"),
        ("attacks: []", "attacks"),
        ("data: digits", "data"),
        ("data: {name: digits, n_eval: 0}", "n_eval"),
        ("batch_size: 0", "batch_size"),
    ],
)
def test_experiment_files_are_checked_before_training(capsys, tmp_path, body, match):
    base = {"name": "x", "data": "{name: digits, n_eval: 20}", "models": "[{id: m, model: {backbone: mlp}, "
            "train: {epochs: 1}}]", "attacks": "[fgsm]", "eps": "[0, 0.1]"}
    key = body.split(":")[0]
    base[key] = body.split(":", 1)[1].strip()
    spec = tmp_path / "exp.yaml"
    spec.write_text("".join(f"{k}: {v}\n" for k, v in base.items()))
    target = tmp_path / "run"
    check_refused(capsys, ["run", spec, "--out", target], match, target)
    assert not target.exists()  # nothing trained, nothing saved


def test_run_with_a_bad_attack_parameter_trains_nothing(capsys, tmp_path):
    spec = tmp_path / "exp.yaml"
    spec.write_text("name: x\ndata: {name: digits, n_eval: 20}\nmodels: [{id: m, model: {backbone: mlp}, "
                    "train: {epochs: 1}}]\nattacks: [{name: pgd, steps: 0}]\neps: [0.1]\n")
    target = tmp_path / "run"
    check_refused(capsys, ["run", spec, "--out", target], "steps", target)


def test_anonymize_refuses_k_and_bad_parameters(capsys, ckpt, tmp_path):
    photos = _folder(tmp_path / "photos", 2, 8)
    out = tmp_path / "anon"
    check_refused(capsys, ["anonymize", "--model", ckpt, "--k", "10", photos, "--out", out], "choose K", out, photos)
    check_refused(capsys, ["anonymize", "--model", ckpt, "--k", "3", "-p", "growth=0.5", photos, "--out", out],
                  "growth", out, photos)
    check_refused(capsys, ["anonymize", "--model", ckpt, "--k", "3", "--tolerance", "2", photos, "--out", out],
                  "tolerance", out, photos)


def test_anonymize_fails_loudly_when_its_check_fails(capsys, ckpt, tmp_path):
    photos = _folder(tmp_path / "photos", 3, 8)
    out = tmp_path / "anon"
    rc = main(["anonymize", "--model", str(ckpt), "--k", "9", "--steps", "1", "--retries", "0", str(photos),
               "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[-1].startswith("error: the K-anonymity check failed") and "Traceback" not in "".join(err)


def test_weights_file_and_debug_anywhere(capsys, ckpt, run_dir):
    """`--model ck/<weights file>` is accepted (as documented), `--debug` works after the command."""
    rc = main(["evaluate", "--model", str(weights_file(ckpt)), "--attack", "fgsm", "--eps", "0.1", "--n-eval", "40",
               "--out", str(run_dir), "--json"])
    assert rc == 0
    capsys.readouterr()
    rc = main(["report", "/nonexistent/run", "--debug"])
    assert rc == 2 and "Traceback" in capsys.readouterr().err



def _in_namespace(setup: str, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = f"{setup} && exec {sys.executable} -m robustlab {' '.join(args)}"
    return subprocess.run(["unshare", "-rm", "sh", "-c", cmd], capture_output=True, text=True, env=env, timeout=600)


def test_full_disk_and_read_only_are_named(tiny_fs, ckpt, run_dir):
    """Through the real entry point, in a private mount namespace: a 64 KiB file system fills up
    ("disk full"), a read-only one is named as such; the previous report survives a full disk."""
    mnt = tiny_fs
    full = _in_namespace(f"mount -t tmpfs -o size=64k tmpfs {mnt}",
                         ["evaluate", "--model", str(ckpt), "--attack", "fgsm", "--eps", "0", "--eps", "0.1",
                          "--n-eval", "360", "--out", f"{mnt}/run"])
    assert full.returncode == 2 and "disk full" in full.stderr and "Traceback" not in full.stderr, full.stderr
    assert len(full.stderr.strip().splitlines()) == 1
    ro = _in_namespace(f"mount -t tmpfs -o size=1m,ro tmpfs {mnt}",
                       ["evaluate", "--model", str(ckpt), "--attack", "fgsm", "--eps", "0.1", "--n-eval", "20",
                        "--out", f"{mnt}/run"])
    assert ro.returncode == 2 and "read-only" in ro.stderr and "Traceback" not in ro.stderr, ro.stderr
    # the report: a good one first, then the disk fills; the good one must stay whole
    setup = (f"mount -t tmpfs -o size=4m tmpfs {mnt} && cp -r {run_dir} {mnt}/run && "
             f"{sys.executable} -m robustlab report {mnt}/run >/dev/null && cp {mnt}/run/report.html {mnt}/good && "
             f"dd if=/dev/zero of={mnt}/fill bs=1k count=100000 2>/dev/null; "
             f"{sys.executable} -m robustlab report {mnt}/run; echo rc=$?; cmp {mnt}/good {mnt}/run/report.html "
             "&& echo same && true")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", setup], capture_output=True, text=True, timeout=600)
    assert "rc=2" in done.stdout and "same" in done.stdout, done.stdout + done.stderr
    assert "disk full" in done.stderr


def test_real_subprocess_exit_codes(ckpt, tmp_path):
    """Three refusals through `python -m robustlab`: exit 2, one line, no traceback, nothing written."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    target = tmp_path / "run"
    for args, match in [
        (["evaluate", "--model", str(ckpt), "--eps", "inf", "--out", str(target)], "finite"),
        (["evaluate", "--model", str(ckpt), "--eps", "0.1", "--attack", "pgd", "-p", "steps=0",
          "--out", str(target), "--debug"], "Traceback"),
        (["train", "--epochs", "1", "--out", str(ckpt)], "--overwrite"),
    ]:
        done = subprocess.run([sys.executable, "-m", "robustlab", *args], capture_output=True, text=True, env=env,
                              timeout=600)
        assert done.returncode == 2 and match in done.stderr, done.stderr
        if "--debug" not in args:
            assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
        assert not target.exists()
