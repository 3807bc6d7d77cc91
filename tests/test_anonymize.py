"""`anonymize`: a folder round trip (sizes, count, formats, inputs untouched), safety, errors, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from paper001_helpers import digits, trained_mlp
from robustlab.cli.app import main
from robustlab.core.errors import ConfigError, DataError
from robustlab.data import read_image, resize_images, write_image
from robustlab.privacy import anonymize_folder
from robustlab.store import save_checkpoint


def _make_folder(root: Path) -> None:
    x, y = digits()
    for i in range(1400, 1425):
        write_image(x[i], root / str(int(y[i])) / f"img{i}.png")
    for i in range(1425, 1430):  # another size: attacked through the model's resize
        write_image(resize_images(x[i : i + 1], (12, 12))[0], root / str(int(y[i])) / f"big{i}.png")
    for i in range(1430, 1435):  # no label, another format
        write_image(x[i], root / f"unlabelled{i}.bmp")
    (root / "notes.txt").write_text("not an image")


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_round_trip_keeps_sizes_formats_and_inputs(tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out"
    _make_folder(src)
    before = _digest(src)
    result = anonymize_folder(
        trained_mlp(), src, dst, K=5, attack_params={"steps": 150, "similarity": "ssim"}
    )
    assert _digest(src) == before  # inputs untouched
    inputs = sorted(p.relative_to(src) for p in src.rglob("*") if p.is_file() and p.suffix != ".txt")
    outputs = sorted(p.relative_to(dst) for p in dst.rglob("*") if p.is_file())
    assert inputs == outputs and len(outputs) == 35
    for rel in inputs:
        a, b = read_image(src / rel), read_image(dst / rel)
        assert a.shape == b.shape
        assert (dst / rel).read_bytes()[:2] == (src / rel).read_bytes()[:2]  # same format (magic bytes)
    assert result.skipped == ["notes.txt"]
    records = {r["file"]: r for r in result.records}
    assert sum(r["label_source"] == "model" for r in result.records) == 5
    assert all(r["label_source"] == "folder" for f, r in records.items() if "/" in f)
    hidden = sum(r["hidden"] for r in result.records)
    assert hidden >= 32, [r for r in result.records if not r["hidden"]]
    assert all(r["hidden"] for f, r in records.items() if f.split("/")[-1].startswith("big"))


def test_unreadable_image_is_a_clear_error_and_nothing_is_written(tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out"
    _make_folder(src)
    (src / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="broken.png"):
        anonymize_folder(trained_mlp(), src, dst, K=3, attack_params={"steps": 5})
    assert not dst.exists() or not any(dst.iterdir())


def test_output_must_not_overlap_the_input(tmp_path):
    src = tmp_path / "in"
    _make_folder(src)
    model = trained_mlp()
    for bad in (src, src / "sub", tmp_path):
        with pytest.raises(ConfigError, match="overlaps"):
            anonymize_folder(model, src, bad, K=2)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.png").write_bytes(b"")
    with pytest.raises(ConfigError, match="not empty"):
        anonymize_folder(model, src, tmp_path / "full", K=2)
    x, _ = digits()
    write_image(resize_images(x[:1], (12, 12))[0], tmp_path / "other" / "a.png")
    with pytest.raises(ConfigError, match="resize"):
        anonymize_folder(model, tmp_path / "other", tmp_path / "o2", K=2, size_policy="refuse")


def test_cli_anonymize_writes_images_and_report(tmp_path):
    ckpt = save_checkpoint(trained_mlp(), tmp_path / "ckpt")
    src, dst = tmp_path / "in", tmp_path / "out"
    x, y = digits()
    for i in range(1500, 1512):
        write_image(x[i], src / f"{i}.png")
    code = main(
        [
            "anonymize",
            "--model",
            str(ckpt),
            "--k",
            "3",
            "--steps",
            "100",
            "--similarity",
            "ssim",
            str(src),
            "--out",
            str(dst),
        ]
    )
    assert code == 0
    assert len(list(dst.glob("*.png"))) == 12
    report = tmp_path / "out-report"
    doc = json.loads((report / "report.json").read_text())
    assert doc["kanonymity"]["K"] == 3 and len(doc["images"]) == 12
    assert (report / "rank_pmf.png").read_bytes()[:4] == b"\x89PNG"
    assert "K-anonymity" in (report / "report.md").read_text()
    assert main(["anonymize", "--model", str(ckpt), str(src), "--out", str(src / "x")]) == 2
    assert torch.equal(read_image(src / "1500.png"), read_image(src / "1500.png"))
