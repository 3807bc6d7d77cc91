"""Checkpoints round-trip exactly; anything that is not ours is refused with a clear error."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from robustlab.core import CheckpointError
from robustlab.core.runtime import seeded
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

    from robustlab.core.weights import sniff

    path = tmp_path / "w.safetensors"
    for n in range(1, 400):
        save_file({"w" * n: torch.zeros(1)}, str(path))
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    assert sniff(path) == "safetensors"
    assert struct.unpack("<Q", path.read_bytes()[:8])[0] < path.stat().st_size


KILLED_SAVE = """
import os, pathlib, signal, sys
from robustlab.core.runtime import seeded
from robustlab.models import build_model
from robustlab.store import checkpoints

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

with seeded(2):
    model = build_model({cfg!r})
if sys.argv[2] == "before-config":  # the new weights file is in place, config.json not yet replaced
    checkpoints.publish = die
else:  # config.json replaced, the old weights not yet removed
    pathlib.Path.unlink = die
checkpoints.save_checkpoint(model, sys.argv[1], metadata={{"version": 2}})
"""


@pytest.mark.parametrize("moment,version", [("before-config", 1), ("before-cleanup", 2)])
def test_a_kill_between_the_two_files_never_pairs_new_weights_with_an_old_config(tmp_path, moment, version):
    """Replace a checkpoint in a process killed (SIGKILL) between writing the weights and the
    config, or just after: the directory then loads as the old model or as the new one, whole,
    never new weights under the old config; the next save cleans up."""
    import subprocess
    import sys

    with seeded(1):
        old = build_model(CFG).eval()
    path = save_checkpoint(old, tmp_path / "ck", metadata={"version": 1})
    script = tmp_path / "save.py"
    script.write_text(KILLED_SAVE.format(cfg=CFG))
    done = subprocess.run([sys.executable, str(script), str(path), moment], capture_output=True, timeout=300)
    assert done.returncode == -9, done.stderr
    with seeded(2):
        new = build_model(CFG).eval()
    x = torch.rand(4, 1, 8, 8)
    loaded = load_checkpoint(path)
    assert read_checkpoint_config(path)["metadata"] == {"version": version}
    assert torch.equal(loaded(x), (old if version == 1 else new)(x))
    assert len(list(path.glob("weights-*.safetensors"))) == 2  # the killed writer's leftover
    save_checkpoint(new, path, metadata={"version": 3})
    assert [p.name for p in path.glob("*.safetensors")] == [weights_file(path).name]
    assert torch.equal(load_checkpoint(path)(x), new(x))


def _forge_legacy(path, mutate_head_args) -> None:
    """Rewrite a checkpoint as an older robustlab wrote it: the model section without the
    head's keyed defaults, its digest the hash of that section, the weights header likewise."""
    import hashlib

    from safetensors.torch import load_file, save

    doc = json.loads((path / "config.json").read_text())
    mutate_head_args(doc["model"]["head_args"])
    digest = hashlib.sha256(json.dumps(doc["model"], sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]
    old = weights_file(path)
    blob = save(load_file(str(old)), metadata={"format": "robustlab-checkpoint", "digest": digest})
    sha = hashlib.sha256(blob).hexdigest()
    (path / f"weights-{sha[:16]}.safetensors").write_bytes(blob)
    old.unlink()
    doc.update(digest=digest, weights={"file": f"weights-{sha[:16]}.safetensors", "sha256": sha})
    (path / "config.json").write_text(json.dumps(doc))


def test_pcl_checkpoint_from_before_keyed_decisions_loads_with_its_prototype_rule(tmp_path):
    """A PCL checkpoint saved before the decision was written into configs decided by nearest
    prototype: it loads, and decides so (not by the softmax default of new configs)."""
    torch.manual_seed(0)
    pcl = {**CFG, "head": "pcl", "head_args": {"decision": "prototype"}}
    model = build_model(pcl).eval()
    path = save_checkpoint(model, tmp_path / "old-pcl")
    fmt = json.loads((path / "config.json").read_text())["format"]
    assert fmt == "robustlab-checkpoint"
    _forge_legacy(path, lambda args: args.pop("decision"))
    loaded = load_checkpoint(path)
    assert loaded.config.head_args["decision"] == "prototype"
    x = torch.rand(64, 1, 8, 8)
    assert torch.equal(loaded.predict(x), model.predict(x))
    # a config edited after saving (not a legacy one) is still refused
    doc = json.loads((path / "config.json").read_text())
    doc["model"]["head_args"]["decision"] = "softmax"
    (path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="digest does not match"):
        load_checkpoint(path)
