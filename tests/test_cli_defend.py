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
                 "--n-eval", "40", "--out", str(tmp_path / "run"), "--json"])
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


def test_a_defense_that_did_not_fit_is_flagged_by_defend_evaluate_and_the_report(capsys, base_ckpt, tmp_path):
    """Distillation from scratch at T = 100 for one epoch stays near chance: `defend` says so in one
    stderr line and records it, `evaluate` carries it (stderr, --json) beside the base's clean
    accuracy, and the report shows it as a banner, never a green masking verdict."""
    bad = tmp_path / "bad"
    assert main(["defend", "distill", "--model", str(base_ckpt), "-T", "100", "--epochs", "1", "--init", "scratch",
                 "--out", str(bad), "--json"]) == 0
    captured = capsys.readouterr()
    doc = _last_json(captured.out)
    assert doc["warning"] and doc["clean_accuracy"] < 0.5 < doc["base_clean_accuracy"]
    lines = [line for line in captured.err.splitlines() if "did not fit" in line]
    assert len(lines) == 1 and "distillation" in lines[0]
    run = tmp_path / "run"
    assert main(["evaluate", "--model", str(base_ckpt), "--attack", "pgd", "--attack", "fgsm", "--eps", "0.1",
                 "--steps", "3", "--n-eval", "40", "--out", str(run), "--json"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(bad), "--attack", "pgd", "--attack", "fgsm", "--eps", "0.1",
                 "--steps", "3", "--n-eval", "40", "--out", str(run), "--json"]) == 0
    captured = capsys.readouterr()
    ev = _last_json(captured.out)
    assert ev["warning"] == doc["warning"] and "did not fit" in captured.err
    assert ev["clean_accuracy"] == doc["clean_accuracy"] and ev["base_clean_accuracy"] == doc["base_clean_accuracy"]
    assert main(["report", str(run)]) == 0
    report = json.loads((run / "report.json").read_text())
    assert any("did not fit" in line for line in report["sections"]["warnings"]["data"])
    assert any("less robust than its undefended base base at eps 0.1" in line
               for line in report["sections"]["warnings"]["data"])  # compared on the same samples
    (defended,) = report["defended"]
    assert defended["base"] and defended["base_name"] == "base" and defended["warning"] == doc["warning"]
    html = (run / "report.html").read_text()
    verdict = next(line for line in html.split("<div class='verdict ") if line.startswith(("ok", "bad", "warn"))
                   and "gradient masking" in line and "distillation" in line)
    assert verdict.startswith("bad") and "did not fit" in verdict
    assert "defended from base" in (run / "report.md").read_text()


def test_a_defense_that_fits_gives_no_warning(capsys, base_ckpt, tmp_path):
    out = tmp_path / "sq"
    assert main(["defend", "squeeze", "-s", "bits:4", "--model", str(base_ckpt), "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    assert _last_json(captured.out)["warning"] is None and "did not fit" not in captured.err


def test_distillation_by_default_starts_from_the_base_model_and_stays_near_it(capsys, base_ckpt, tmp_path):
    """README's `defend distill -T 100` with its defaults (the student warm-started from the base,
    `init: base`) keeps the base's clean accuracy within a few points; from scratch it does not."""
    assert main(["defend", "distill", "--model", str(base_ckpt), "-T", "100", "--epochs", "2",
                 "--out", str(tmp_path / "d"), "--json"]) == 0
    doc = _last_json(capsys.readouterr().out)
    assert doc["defense_build"]["config"]["init"] == "base" and doc["warning"] is None
    assert abs(doc["clean_accuracy"] - doc["base_clean_accuracy"]) < 0.05
