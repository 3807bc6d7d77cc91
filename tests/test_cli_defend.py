"""`robustlab defend distill|squeeze|magnet|svdd` write checkpoints that `robustlab evaluate` takes
(the defense in the result rows), bad parameters fail before anything is written."""

from __future__ import annotations

import json

import pytest

from robustlab.cli.app import main
from robustlab.store import load_checkpoint
from robustlab.store.checkpoints import weights_file


def _last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def base_ckpt(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("defend") / "base"
    assert main(["train", "--data", "digits", "--backbone", "mlp", "--epochs", "8", "--optimizer", "adam",
                 "--lr", "0.003", "--out", str(ckpt), "--json"]) == 0
    return ckpt


DEFENDS = {
    "distill": ["distill", "-T", "20", "--epochs", "2", "--lr", "0.01"],
    "squeeze": ["squeeze", "-s", "bits:3"],
    "detector": ["squeeze", "--detect", "-s", "bits:2", "-s", "median:2", "--fpr", "0.1"],
    "magnet": ["magnet", "--structure", "4,pool,4", "--epochs", "2"],
    "svdd": ["svdd", "--projections", "8", "--positive-epochs", "2", "--svdd-epochs", "2", "--finetune-epochs", "0"],
}
EXPECTED = {"distill": "distillation", "squeeze": "squeeze", "detector": "squeeze-detector", "magnet": "magnet",
            "svdd": "msvdd"}


@pytest.mark.parametrize("kind", sorted(DEFENDS))
def test_defend_then_evaluate(capsys, base_ckpt, tmp_path, kind):
    out = tmp_path / kind
    assert main(["defend", *DEFENDS[kind], "--model", str(base_ckpt), "--out", str(out), "--json"]) == 0
    doc = _last_json(capsys.readouterr().out)
    model = load_checkpoint(out)
    assert model.defense_spec()["name"] == EXPECTED[kind]
    if kind != "svdd":
        assert 0 <= doc["test"]["accuracy"] <= 1
    code = main(["evaluate", "--model", str(out), "--attack", "fgsm", "--eps", "0", "--eps", "0.1",
                 "--n-eval", "40", "--run-dir", str(tmp_path / "run"), "--json"])
    assert code == 0
    rows = _last_json(capsys.readouterr().out)["rows"]
    assert rows and all(r["defense"].startswith(EXPECTED[kind]) for r in rows)
    # an existing checkpoint is not overwritten unless asked
    before = weights_file(out).read_bytes()
    assert main(["defend", *DEFENDS[kind], "--model", str(base_ckpt), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert weights_file(out).read_bytes() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["squeeze", "-s", "bits:0"], "1..8"),
        (["squeeze", "-s", "sharpen:2"], "unknown squeezer"),
        (["squeeze", "--detect", "--fpr", "1.2"], "false-positive rate"),
        (["distill", "-T", "0"], "T must be > 0"),
        (["magnet", "--fpr", "0"], "false-positive rate"),
    ],
)
def test_bad_parameters_one_line_nothing_written(capsys, base_ckpt, tmp_path, args, message):
    out = tmp_path / "never"
    assert main(["defend", *args, "--model", str(base_ckpt), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()
