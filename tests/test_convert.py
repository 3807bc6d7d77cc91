"""`robustlab convert`: torch.save checkpoints into safetensors, tensors only, never running code."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from robustlab.cli.app import main
from robustlab.core.errors import CheckpointError, ConfigError
from robustlab.models.zoo import convert_checkpoint


class Payload:
    """A pickle that runs code when loaded: it would create `marker` (os.system, in real attacks)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"conv1.weight": torch.randn(4, 3, 3, 3, generator=g), "bn1.running_mean": torch.randn(4, generator=g),
            "bn1.num_batches_tracked": torch.tensor(7), "fc.weight": torch.randn(10, 4, generator=g).t()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)


@pytest.mark.parametrize("wrap, key", [
    (lambda s: s, None),
    (lambda s: {"state_dict": {f"module.{k}": v for k, v in s.items()}, "epoch": 3, "best_acc": 0.5}, "state_dict"),
    (lambda s: {"model": s, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}}, "model"),
    (lambda s: {f"module.{k}": v for k, v in s.items()}, None),
])
def test_converts_state_dicts_and_wrappers(tmp_path, wrap, key):
    src, out = tmp_path / "w.pt", tmp_path / "w.safetensors"
    torch.save(wrap(_state()), src)
    done = convert_checkpoint(src, out)
    assert _same(load_file(str(out)), _state()) and done["wrapper"] == key and done["tensors"] == 4


def test_named_key_and_extra_prefix(tmp_path):
    src, out = tmp_path / "w.pth", tmp_path / "w.safetensors"
    torch.save({"last": {f"model.{k}": v for k, v in _state().items()}, "best": {}}, src)
    with pytest.raises(CheckpointError, match="no state dict of tensors"):
        convert_checkpoint(src, out)
    convert_checkpoint(src, out, key="last", strip=("module.", "model."))
    assert _same(load_file(str(out)), _state())


def test_shared_storage_is_written(tmp_path):
    w = torch.randn(5, 5)
    src, out = tmp_path / "w.pt", tmp_path / "w.safetensors"
    torch.save({"a.weight": w, "b.weight": w, "c": w[0]}, src)  # tied weights and a view
    convert_checkpoint(src, out)
    got = load_file(str(out))
    assert torch.equal(got["a.weight"], w) and torch.equal(got["b.weight"], w) and torch.equal(got["c"], w[0])


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_code_carrying_pickle_is_refused_and_never_run(tmp_path, how):
    marker = tmp_path / "pwned"
    src, out = tmp_path / "evil.pt", tmp_path / "evil.safetensors"
    doc = {"state_dict": _state(), "hook": Payload(marker)}
    if how == "torch.save":
        torch.save(doc, src)
    else:
        src.write_bytes(pickle.dumps(doc, protocol=2))
    with pytest.raises(CheckpointError, match="weights_only=True refused"):
        convert_checkpoint(src, out)
    assert not marker.exists() and not out.exists()
    assert list(tmp_path.iterdir()) == [src]  # no temporary file left either
    if how == "pickle":  # control: the same file, unpickled as-is, does run the payload
        pickle.loads(src.read_bytes())
        assert marker.exists()


@pytest.mark.parametrize("content, says", [
    ({"a": torch.ones(2), "b": [1, 2]}, "no state dict of tensors"),
    ({"state_dict": {"a": torch.ones(2), "n": 3}}, "not tensors"),
    ({"state_dict": {}}, "empty"),
    ([torch.ones(2)], "not a state dict"),
    ({"state_dict": {"module.a": torch.ones(1), "a": torch.ones(1)}}, "two tensors"),
])
def test_refuses_what_is_not_a_state_dict(tmp_path, content, says):
    src, out = tmp_path / "w.pt", tmp_path / "w.safetensors"
    torch.save(content, src)
    with pytest.raises(CheckpointError, match=says):
        convert_checkpoint(src, out)
    assert not out.exists()


def test_never_overwrites_unless_asked(tmp_path):
    src, out = tmp_path / "w.pt", tmp_path / "w.safetensors"
    torch.save(_state(), src)
    out.write_bytes(b"keep me")
    with pytest.raises(ConfigError, match="--overwrite"):
        convert_checkpoint(src, out)
    assert out.read_bytes() == b"keep me"
    convert_checkpoint(src, out, overwrite=True)
    assert _same(load_file(str(out)), _state())
    with pytest.raises(ConfigError, match="already a safetensors"):
        convert_checkpoint(out, tmp_path / "again.safetensors")
    with pytest.raises(ConfigError, match=".safetensors"):
        convert_checkpoint(src, tmp_path / "w.bin")
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        convert_checkpoint(tmp_path / "missing.pt", tmp_path / "m.safetensors")


def test_cli_one_line_and_nothing_written(tmp_path, capsys):
    marker = tmp_path / "pwned"
    src, out = tmp_path / "evil.pt", tmp_path / "evil.safetensors"
    torch.save({"hook": Payload(marker), "state_dict": _state()}, src)
    assert main(["convert", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "nothing written" in err
    assert not out.exists() and not marker.exists()
    good = tmp_path / "good.pt"
    torch.save({"state_dict": _state()}, good)
    assert main(["convert", str(good), "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tensors"] == 4 and _same(load_file(str(out)), _state())
