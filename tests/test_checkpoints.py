"""Checkpoints round-trip exactly; anything that is not ours is refused with a clear error."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from robustlab.core import CheckpointError
from robustlab.models import build_model
from robustlab.store import load_checkpoint, read_checkpoint_config, save_checkpoint
from robustlab.store.checkpoints import weights_file

CFG = {"backbone": "lenet", "head": "softmax", "num_classes": 10, "input_shape": [1, 8, 8],
       "normalize": {"mean": [0.3], "std": [0.2]}}


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = build_model(CFG).eval()
    path = save_checkpoint(model, tmp_path / "ckpt", metadata={"note": "hi"})
    return model, path


def test_round_trip_is_exact(saved):
    model, path = saved
    loaded = load_checkpoint(path)
    x = torch.rand(5, 1, 8, 8)
    assert torch.equal(model(x), loaded(x))
    assert not loaded.training
    assert read_checkpoint_config(path)["metadata"] == {"note": "hi"}
    assert torch.equal(load_checkpoint(path / "config.json")(x), model(x))


def test_refuses_pickles(tmp_path, saved):
    model, _ = saved
    pt = tmp_path / "weights.pt"
    torch.save(model.state_dict(), pt)
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(pt)
    disguised = tmp_path / "disguised"
    disguised.mkdir()
    (disguised / weights_file(saved[1]).name).write_bytes(pickle.dumps({"a": 1}))
    (disguised / "config.json").write_text((saved[1] / "config.json").read_text())
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(disguised)


def test_refuses_mismatched_config(saved):
    _, path = saved
    doc = json.loads((path / "config.json").read_text())
    doc["model"]["num_classes"] = 9
    (path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="digest"):
        load_checkpoint(path)
    from robustlab.models import ModelConfig

    doc["digest"] = ModelConfig.from_dict(doc["model"]).digest()
    (path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(path)


def test_refuses_foreign_and_corrupt_files(tmp_path, saved):
    _, path = saved
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing")
    (path / "config.json").write_text(json.dumps({"model": {}}))
    with pytest.raises(CheckpointError, match="format marker"):
        load_checkpoint(path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        load_checkpoint(path)


def test_refuses_truncated_weights(saved):
    _, path = saved
    weights = weights_file(path)
    blob = weights.read_bytes()
    weights.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(path)


def test_header_length_with_a_pickle_like_first_byte_loads(tmp_path):
    """A safetensors header length whose low byte is 0x80 must not be mistaken for a pickle."""
    import struct

    from safetensors.torch import save_file

    from robustlab.store.checkpoints import _sniff

    path = tmp_path / "w.safetensors"
    for n in range(1, 400):
        save_file({"w" * n: torch.zeros(1)}, str(path))
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    assert _sniff(path) == "safetensors"
    assert struct.unpack("<Q", path.read_bytes()[:8])[0] < path.stat().st_size
