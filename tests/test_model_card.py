"""`robustlab report RUN --format robustbench`: the zoo's model_info JSON per model and threat
model, from a small run; its numbers are the run's own (evaluate --json), its fields the zoo's."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from robustlab.cli.app import main
from robustlab.evaluate.summary import summarize
from robustlab.report.robustbench import model_cards
from robustlab.store.results import ResultKey, ResultStore

ZOO_FIELDS = ["link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue",
              "architecture", "eps", "clean_acc", "reported", "autoattack_acc", "footnote"]
"""robustbench.utils.ModelInfo's fields less corruptions_acc, in the zoo's order."""


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("card")
    (root / "net.py").write_text("import torch\ndef make():\n    torch.manual_seed(0)\n    return torch.nn.Sequential("
                                 "torch.nn.Flatten(), torch.nn.Linear(64, 10))\n")
    run_dir = root / "run"
    args = ["evaluate", "--module", f"{root / 'net.py'}:make", "--untrained", "--data", "digits", "--n-eval", "40",
            "--attack", "autoattack", "--attack", "fgsm", "-p", "steps=5", "-p", "queries=20", "-p", "n_targets=2",
            "--eps", "0", "--eps", "8/255", "--eps", "0.1", "--out", str(run_dir), "--json"]
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(args) == 0
    return run_dir, json.loads(buf.getvalue().strip().splitlines()[-1])


def test_cards_carry_the_runs_numbers(run, capsys):
    run_dir, evaluated = run
    out = run_dir.parent / "cards"
    assert main(["report", str(run_dir), "--format", "robustbench", "--out", str(out), "--json"]) == 0
    written = sorted(Path(p).relative_to(out).as_posix() for p in json.loads(capsys.readouterr().out)["cards"])
    assert written == ["digits/Linf/make_eps-0.1.json", "digits/Linf/make_eps-8-255.json"]
    with ResultStore(run_dir, readonly=True) as store:
        clean_test = store.get_meta("models")[evaluated["model"]]["clean_accuracy"]
    for name, eps, text in (("make_eps-8-255", 8 / 255, "8/255"), ("make_eps-0.1", 0.1, "0.1")):
        card = json.loads((out / "digits" / "Linf" / f"{name}.json").read_text())
        assert list(card)[:len(ZOO_FIELDS)] == ZOO_FIELDS
        worst = next(r for r in evaluated["rows"] if r["eps"] == eps and r["attack"] == "worst-case")
        assert card["eps"] == text and card["dataset"] == "digits" and card["clean_acc"] == f"{100 * clean_test:.2f}"
        assert all(card[k] is None for k in ("link", "name", "authors", "venue", "reported", "additional_data"))
        assert card["autoattack_acc"] is None and "reduced" in card["footnote"] and "40" in card["footnote"]
        extra = card["robustlab"]
        assert extra["robust_accuracy"] == worst["robust_accuracy"] and extra["samples"]["n"] == worst["n"] == 40
        assert extra["threat_model"] == {"norm": "linf", "eps": eps, "eps_text": text, "pixel_range": [0.0, 1.0]}
        k = round(worst["robust_accuracy"] * 40)
        assert extra["robust_accuracy_interval"] == pytest.approx(_wilson(k, 40), abs=1e-9)
        assert "fgsm" in extra["attacks"] and extra["protocol"] is None


def test_never_overwrites_unless_asked(run, capsys):
    run_dir, _ = run
    out = run_dir.parent / "cards2"
    assert main(["report", str(run_dir), "--format", "robustbench", "--out", str(out)]) == 0
    target = out / "digits" / "Linf" / "make_eps-0.1.json"
    target.write_text("mine")
    capsys.readouterr()
    assert main(["report", str(run_dir), "--format", "robustbench", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err and target.read_text() == "mine"
    assert main(["report", str(run_dir), "--format", "robustbench", "--out", str(out), "--overwrite"]) == 0
    assert json.loads(target.read_text())["eps"] == "0.1"
    assert main(["report", str(run_dir), "--format", "pdf"]) == 2 and "--format" in capsys.readouterr().err


def test_autoattack_acc_only_for_a_full_autoattack_protocol(run, tmp_path):
    """A full-strength `standard` cell at 8/255 (stored beside the run's own cells) fills autoattack_acc
    with the worst case per sample there; the eps without one stays empty."""
    run_dir, evaluated = run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    with ResultStore(copy) as store:
        row = next(r for r in store.rows() if r.key.eps == 0.1 and "autoattack" in r.key.attack)
        spec = {**json.loads(row.key.attack), "steps": 100, "n_targets": 9, "queries": 5000, "version": "standard"}
        key = ResultKey(**{**row.key.__dict__, "attack": json.dumps(spec, sort_keys=True), "eps": 8 / 255})
        store.put(key, row.metrics, row.per_sample)
        worst = next(r for r in summarize(store) if r["eps"] == 8 / 255 and r["attack"] == "worst-case")
    cards = {p.name: c for p, c in model_cards(copy).items()}
    card = cards["make_eps-8-255.json"]
    assert card["robustlab"]["protocol"] == "standard"
    assert card["autoattack_acc"] == f"{100 * worst['robust_accuracy']:.2f}"
    assert worst["robust_accuracy"] <= min(r["robust_accuracy"] for r in evaluated["rows"] if r["eps"] == 8 / 255)
    assert cards["make_eps-0.1.json"]["autoattack_acc"] is None


def test_zoo_model_card_names_its_architecture(tmp_path, capsys):
    from robustlab.data.images import write_image
    from robustlab.models.zoo import zoo_arch

    g = torch.Generator().manual_seed(0)
    for c in range(10):
        (tmp_path / "data" / f"c{c}").mkdir(parents=True)
        for i in range(4):
            write_image(torch.rand(3, 32, 32, generator=g), tmp_path / "data" / f"c{c}" / f"{i}.png")
    from safetensors.torch import save_file

    save_file(zoo_arch("dm-wrn-10-1").build(10).state_dict(), str(tmp_path / "w.safetensors"))
    run_dir = tmp_path / "run"
    assert main(["evaluate", "--zoo-arch", "dm-wrn-10-1", "--weights", str(tmp_path / "w.safetensors"), "--data",
                 f"folder:{tmp_path / 'data'}", "--attack", "fgsm", "--eps", "8/255", "--out", str(run_dir)]) == 0
    assert main(["report", str(run_dir), "--format", "robustbench"]) == 0
    (card_path,) = (run_dir / "robustbench").rglob("*.json")
    card = json.loads(card_path.read_text())
    assert card["architecture"] == "WideResNet-10-1" and card["eps"] == "8/255"
    assert card_path.relative_to(run_dir / "robustbench").parts[1] == "Linf"
    capsys.readouterr()
