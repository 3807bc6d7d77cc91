"""RobustBench's architectures: a checkpoint in the zoo's layout (its key names, ``module.``
prefixes, a ``state_dict`` wrapper), saved with torch.save, converted and loaded, gives the logits
of the same weights in the zoo's own module (the published definitions, loaded from the installed
robustbench source file by file, without importing robustbench or torchvision) and of robustlab's
module loaded directly; full-size layouts match the published key sets and parameter counts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from robustlab.cli.app import main
from robustlab.core.errors import CheckpointError, ConfigError
from robustlab.models.wrap import WrappedModel
from robustlab.models.zoo import EXAMPLES, convert_checkpoint, load_zoo_model, zoo_arch
from robustlab.models.zoo.registry import CIFAR10_MEAN, CIFAR10_STD


def _reference_source() -> Path | None:
    spec = importlib.util.find_spec("robustbench")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "model_zoo" / "architectures"
    return root if (root / "wide_resnet.py").is_file() else None


REF_ROOT = _reference_source()
needs_reference = pytest.mark.skipif(REF_ROOT is None, reason="robustbench's source is not installed")


def _ref(name: str):
    """One architecture file of robustbench, loaded on its own (it imports only torch)."""
    assert REF_ROOT is not None
    spec = importlib.util.spec_from_file_location(f"_robustbench_ref_{name}", REF_ROOT / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _randomize(net: nn.Module, seed: int) -> nn.Module:
    """Random weights and batch-norm statistics, so a permuted or skipped tensor changes the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if t.is_floating_point():
                values = torch.rand(t.shape, generator=g) * 0.5 + 0.5 if name.endswith("running_var") else (
                    torch.randn(t.shape, generator=g) * 0.2)
                t.copy_(values)
    return net.eval()


# (our registry name, the zoo's constructor in its published source, the zoo applies CIFAR mean / std itself)
CASES = {
    "wrn-10-2": (lambda r: r("wide_resnet").WideResNet(depth=10, num_classes=10, widen_factor=2, sub_block1=True),
                 False),
    "wrn-16-1": (lambda r: r("wide_resnet").WideResNet(depth=16, num_classes=10, widen_factor=1), False),
    "dm-wrn-10-2": (lambda r: (m := r("dm_wide_resnet")).DMWideResNet(10, 10, 2, m.Swish), True),
    "dm-wrn-10-2-relu": (lambda r: r("dm_wide_resnet").DMWideResNet(10, 10, 2, nn.ReLU), True),
    "dm-preact-resnet-18": (lambda r: (m := r("dm_wide_resnet")).DMPreActResNet(10, 18, 0, m.Swish), True),
    "preact-resnet-18": (lambda r: r("resnet").PreActResNet18(), False),
    "preact-resnet-18-v2": (lambda r: (m := r("resnet")).PreActResNet(m.PreActBlockV2, [2, 2, 2, 2],
                                                                     bn_before_fc=True), False),
    "resnet-18": (lambda r: r("resnet").ResNet18(), False),
    "resnet-50": (lambda r: r("resnet").ResNet50(), False),
}


def _zoo_checkpoint(tmp_path: Path, state: dict[str, torch.Tensor]) -> Path:
    """As the zoo ships them (e.g. Carmon et al.): DataParallel keys under a state_dict wrapper, with extras."""
    path = tmp_path / "zoo.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 200,
                "optimizer": {"lr": 0.1}}, path)
    return path


@needs_reference
@pytest.mark.parametrize("name", list(CASES))
def test_zoo_checkpoint_converts_and_matches_the_published_module(tmp_path, name):
    build, normalizes = CASES[name]
    reference = _randomize(build(_ref), seed=len(name))
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    converted = tmp_path / "zoo.safetensors"
    convert_checkpoint(_zoo_checkpoint(tmp_path, reference.state_dict()), converted)
    model, key = load_zoo_model(name, converted)
    assert isinstance(model, WrappedModel) and key.startswith(f"{name}:") and not model.training
    with torch.no_grad():
        expected = reference(x)
        if not normalizes:  # the bare zoo module takes [0, 1] inputs; robustlab adds no normalization either
            assert isinstance(model.normalizer, nn.Identity)
        scale = float(expected.abs().max())  # deep random nets reach large logits: float error scales with them
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5 * scale)
        assert torch.equal(model.predict(x), expected.argmax(1))


@pytest.mark.parametrize("name", ["wrn-10-2", "dm-wrn-10-2", "dm-preact-resnet-18", "preact-resnet-18-v2",
                                  "resnet-18"])
def test_loaded_model_equals_robustlabs_module_loaded_directly(tmp_path, name):
    arch = zoo_arch(name)
    direct = _randomize(arch.build(10), seed=3)
    converted = tmp_path / "w.safetensors"
    convert_checkpoint(_zoo_checkpoint(tmp_path, direct.state_dict()), converted)
    model, _ = load_zoo_model(name, converted)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    norm = arch.normalization(10)
    x_in = x if norm is None else (x - torch.tensor(norm[0]).view(1, 3, 1, 1)) / torch.tensor(norm[1]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.equal(model(x), direct(x_in))  # the same module, the same weights: bit for bit


# Parameter counts of the published definitions (robustbench/model_zoo/architectures, with 10
# classes): WideResNet-28-10 36.5M, -34-10 46.2M, -70-16 266.8M as in Zagoruyko & Komodakis and
# RobustBench's leaderboard; checked against the reference modules below where installed.
FULL = {"wrn-28-10": 36_479_194, "wrn-34-10": 46_160_474, "wrn-34-20": 184_531_674, "wrn-70-16": 266_796_506,
        "dm-wrn-28-10": 36_479_194, "dm-wrn-70-16": 266_796_506, "preact-resnet-18": 11_171_146,
        "dm-preact-resnet-18": 12_548_426, "resnet-18": 11_173_962, "resnet-50": 23_520_842}
SAMPLE_KEYS = {
    "wrn-28-10": ["conv1.weight", "block1.layer.0.bn1.running_mean", "block1.layer.0.convShortcut.weight",
                  "block3.layer.3.conv2.weight", "bn1.weight", "fc.weight", "fc.bias"],
    "dm-wrn-70-16": ["init_conv.weight", "layer.0.block.0.batchnorm_0.weight", "layer.2.block.10.conv_1.weight",
                     "layer.1.block.0.shortcut.weight", "batchnorm.running_var", "logits.weight"],
    "dm-preact-resnet-18": ["conv_2d.weight", "layer_0.0.conv_2d_1.weight", "layer_1.0.shortcut.weight",
                            "layer_3.1.batchnorm_1.bias", "logits.bias"],
    "preact-resnet-18": ["conv1.weight", "layer1.0.bn1.weight", "layer2.0.shortcut.0.weight", "linear.weight"],
    "resnet-50": ["conv1.weight", "bn1.weight", "layer1.0.conv3.weight", "layer4.2.bn3.running_mean",
                  "layer3.0.shortcut.1.weight", "linear.weight"],
}


def _meta_state(build) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):  # no memory, no time: shapes only
        return {k: tuple(v.shape) for k, v in build().state_dict().items()}


@pytest.mark.parametrize("name", list(FULL))
def test_full_size_layouts(name):
    with torch.device("meta"):
        net = zoo_arch(name).build(10)
    assert sum(p.numel() for p in net.parameters()) == FULL[name]
    keys = net.state_dict()
    for k in SAMPLE_KEYS.get(name, []):
        assert k in keys, k
    assert zoo_arch(name).title in ("WideResNet-28-10", "WideResNet-34-10", "WideResNet-34-20", "WideResNet-70-16",
                                    "PreActResNet-18", "ResNet-18", "ResNet-50")


@needs_reference
@pytest.mark.parametrize("name, build", [
    ("wrn-28-10", lambda r: r("wide_resnet").WideResNet(depth=28, widen_factor=10)),
    ("wrn-34-20", lambda r: r("wide_resnet").WideResNet(depth=34, widen_factor=20)),
    ("wrn-70-16", lambda r: r("wide_resnet").WideResNet(depth=70, widen_factor=16)),
    ("dm-wrn-70-16", lambda r: (m := r("dm_wide_resnet")).DMWideResNet(10, 70, 16, m.Swish)),
    ("dm-wrn-28-10", lambda r: (m := r("dm_wide_resnet")).DMWideResNet(10, 28, 10, m.Swish)),
    ("resnet-50", lambda r: r("resnet").ResNet50()),
])
def test_full_size_key_sets_equal_the_published_ones(name, build):
    assert _meta_state(lambda: zoo_arch(name).build(10)) == _meta_state(lambda: build(_ref))


def test_sub_block1_is_dropped_and_checkpoint_normalization_is_used(tmp_path):
    """Carmon et al.'s checkpoints carry an unused ``sub_block1``; Rice et al.'s wrapper stores ``mu`` / ``sigma``."""
    arch = zoo_arch("wrn-10-1")
    net = _randomize(arch.build(10), seed=5)
    state = dict(net.state_dict())
    state.update({f"sub_block1.{k[len('block1.'):]}": v.clone() + 1 for k, v in state.items()
                  if k.startswith("block1.")})
    mu, sigma = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    path = tmp_path / "w.safetensors"
    save_file({**state, "mu": mu, "sigma": sigma}, str(path))
    model, _ = load_zoo_model("wrn-10-1", path)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net((x - mu) / sigma), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="normalizes with"):  # a contradicting --mean / --std
        load_zoo_model("wrn-10-1", path, mean=(0.5,) * 3, std=(0.5,) * 3)
    model, _ = load_zoo_model("wrn-10-1", path, mean=CIFAR10_MEAN, std=CIFAR10_STD)  # agreeing: fine


def test_refusals(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file(_randomize(zoo_arch("wrn-10-1").build(10), 0).state_dict(), str(path))
    with pytest.raises(CheckpointError, match="does not match"):
        load_zoo_model("dm-wrn-10-1", path)  # another layout
    with pytest.raises(CheckpointError, match="does not match"):
        load_zoo_model("wrn-10-1", path, num_classes=100)
    with pytest.raises(ConfigError, match="unknown zoo architecture"):
        zoo_arch("vit-b16")
    with pytest.raises(ConfigError, match="6n \\+ 4"):
        zoo_arch("wrn-27-10")
    with pytest.raises(ConfigError, match="3x32x32"):
        load_zoo_model("wrn-10-1", path, input_shape=(1, 28, 28))
    pt = tmp_path / "w.pt"
    torch.save(zoo_arch("wrn-10-1").build(10).state_dict(), pt)
    with pytest.raises(CheckpointError, match="robustlab convert"):
        load_zoo_model("wrn-10-1", pt)
    for name in EXAMPLES:
        zoo_arch(name)


def _folder_data(root: Path, n_per_class: int = 6) -> Path:
    from robustlab.data.images import write_image

    g = torch.Generator().manual_seed(0)
    for c in range(10):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(n_per_class):
            write_image(torch.rand(3, 32, 32, generator=g), root / f"c{c}" / f"{i}.png")
    return root


def test_cli_evaluate_zoo_arch(tmp_path, capsys):
    data = _folder_data(tmp_path / "data")
    pt = tmp_path / "zoo.pt"
    state = _randomize(zoo_arch("wrn-10-1").build(10), 1).state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, pt)
    run = tmp_path / "run"
    base = ["evaluate", "--zoo-arch", "wrn-10-1", "--data", f"folder:{data}", "--attack", "fgsm", "--eps", "8/255",
            "--out", str(run), "--json"]
    assert main([*base[:3], "--weights", str(pt), *base[3:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"robustlab convert {pt}" in err and not run.exists()
    converted = tmp_path / "zoo.safetensors"
    assert main(["convert", str(pt), "--out", str(converted)]) == 0
    assert "Wrote" in capsys.readouterr().out
    assert main([*base[:3], "--weights", str(converted), *base[3:]]) == 0
    import json

    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["model"].startswith("wrn-10-1:") and {r["eps"] for r in doc["rows"]} == {8 / 255}
    assert main(["evaluate", "--zoo-arch", "wrn-10-1", "--data", f"folder:{data}"]) == 2
    assert "--weights" in capsys.readouterr().err
