"""The report: headline table equal to `evaluate --json`'s worst-case rows, layout, sections."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from robustlab.cli.app import main
from robustlab.report import Section, register_section, write_report
from robustlab.report.sections import SECTIONS


def _json(capsys, *args: str) -> dict:
    assert main(list(args)) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "ckpt"
    assert main(["train", "--data", "digits", "--backbone", "mlp", "--epochs", "3", "--out", str(path), "--json"]) == 0
    return path


@pytest.fixture(scope="module")
def run(ckpt, tmp_path_factory):
    """fgsm + pgd at eps 0, 0.05, 0.1 on 50 samples, through `evaluate --json`."""
    import contextlib
    import io

    run_dir = tmp_path_factory.mktemp("report") / "run"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["evaluate", "--model", str(ckpt), "--attack", "fgsm", "--attack", "pgd", "--steps", "5",
                     "--eps", "0", "--eps", "0.05", "--eps", "0.1", "--n-eval", "50", "--out", str(run_dir),
                     "--json"])
    assert code == 0
    return run_dir, json.loads(buf.getvalue().strip().splitlines()[-1])


def test_headline_equals_evaluate_json_worst_case_rows(run):
    run_dir, doc = run
    paths = write_report(run_dir)
    report = json.loads(paths["json"].read_text())
    worst = {r["eps"]: r for r in doc["rows"] if r["attack"] == "worst-case"}
    singles = [r for r in doc["rows"] if r["attack"] != "worst-case"]
    (head,) = report["headline"]
    assert head["model"] == doc["model"] and [c["eps"] for c in head["cells"]] == sorted(worst)
    for cell in head["cells"]:
        w = worst[cell["eps"]]
        assert cell["robust_accuracy"] == w["robust_accuracy"]
        assert head["clean_accuracy"] == w["clean_accuracy"]
        at_eps = [r for r in singles if r["eps"] == cell["eps"]]
        low = min(r["robust_accuracy"] for r in at_eps)
        assert cell["strongest"] == [r["attack"] for r in at_eps if r["robust_accuracy"] == low]
        assert cell["ensemble"] == "none" and cell["attacks"] == 2
    # the same numbers in the Markdown and HTML summary tables
    md = paths["markdown"].read_text()
    summary_md = md.split("## Robustness at a glance")[1].split("## ")[0]
    html = paths["html"].read_text()
    summary_html = html.split("id='summary'")[1].split("<section")[0]
    for cell in head["cells"]:
        value = f"{100 * cell['robust_accuracy']:.1f}%"
        assert value in summary_md and value in summary_html
    # clean accuracy labelled by where it was measured; no eps-0 column repeating it; the threat model on top
    assert "clean (attacked, n=50)" in summary_md and "| eps 0 |" not in summary_md
    assert summary_md.strip().startswith("Threat model: Linf perturbations, eps 0.05, 0.1 on the [0, 1] pixel scale")
    assert "clean (test set, n=" in md.split("## Models")[1].split("## ")[0]


def test_layout_order_self_contained_light_and_dark(run):
    run_dir, _ = run
    html = write_report(run_dir)["html"].read_text()
    order = [html.index(f"id='{s}'") for s in ("summary", "models", "details", "masking")]
    assert order == sorted(order)  # summary first, details after it
    assert "id='identification'" not in html  # FMR / FNMR mean nothing for a softmax classifier on digits
    assert "<details>" in html and "prefers-color-scheme:dark" in html
    assert html.count("<picture>") >= 2 and "class='verdict" in html
    assert not re.search(r"""(src|href|srcset)=["'](?!data:)""", html)  # no external assets
    assert "http://" not in html and "https://" not in html


def test_reduced_ensemble_is_said(ckpt, tmp_path, capsys):
    run_dir = tmp_path / "aa"
    doc = _json(capsys, "evaluate", "--model", str(ckpt), "--attack", "autoattack", "-p", "steps=3",
                "-p", "n_targets=1", "-p", "queries=20", "--eps", "0.1", "--n-eval", "30", "--out",
                str(run_dir), "--json")
    assert sorted(doc["rows"][0]["reduced"]) == ["n_targets=1 < 9", "queries=20 < 5000", "steps=3 < 100"]
    paths = write_report(run_dir)
    (cell,) = json.loads(paths["json"].read_text())["headline"][0]["cells"]
    assert cell["ensemble"] == "reduced" and cell["robust_accuracy"] == doc["rows"][0]["robust_accuracy"]
    assert "reduced" in paths["markdown"].read_text().split("## Robustness at a glance")[1].split("## ")[0]
    assert "<span class='tag'>reduced</span>" in paths["html"].read_text()


def test_a_registered_section_reaches_html_markdown_and_json(run, tmp_path):
    run_dir, _ = run

    @register_section("test-extra", order=22)
    def extra(ctx):
        return Section("test-extra", "Extra section", "<p>extra-html</p>", "extra-md", data={"n": len(ctx.doc["rows"])})

    try:
        paths = write_report(run_dir, tmp_path / "out")
    finally:
        SECTIONS.remove("test-extra")
    html = paths["html"].read_text()
    assert html.index("id='summary'") < html.index("extra-html") < html.index("id='models'")
    assert "## Extra section\n\nextra-md" in paths["markdown"].read_text()
    doc = json.loads(paths["json"].read_text())
    assert doc["sections"]["test-extra"]["data"] == {"n": len(doc["rows"])}
    assert not (Path(run_dir) / "report.html.tmp").exists()
