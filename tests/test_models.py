"""The model contract for every backbone and input size, and the config that builds models."""

from __future__ import annotations

import pytest
import torch

from robustlab.core import REJECT, ConfigError
from robustlab.models import BACKBONES, HEADS, ModelConfig, build_model

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 112, 112)]


@pytest.mark.parametrize("backbone", BACKBONES.names())
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_contract_every_backbone_and_size(backbone, shape):
    torch.manual_seed(0)
    model = build_model({"backbone": backbone, "head": "softmax", "num_classes": 7, "input_shape": list(shape)})
    model.eval()
    x = torch.rand(3, *shape)
    scores = model(x)
    assert scores.shape == (3, 7) and scores.dtype == torch.float32
    feats = model.embed(x)
    assert feats.shape == (3, model.backbone.feature_dim)
    pred = model.predict(x)
    assert pred.dtype == torch.int64 and pred.shape == (3,)
    assert torch.equal(pred, scores.argmax(1))
    assert model.num_classes == 7 and model.input_shape == shape
    # scores are differentiable w.r.t. the input
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(xg).sum(), xg)
    assert g.shape == x.shape and torch.isfinite(g).all() and g.abs().sum() > 0
    stages = model.forward_stages(x)
    assert list(stages)[-1] == "features"
    assert {k: v.shape[1] for k, v in stages.items()} == model.backbone.stage_dims


def test_cnn6_matches_pcl_table1():
    model = build_model({"backbone": "cnn6", "head": "softmax", "num_classes": 10, "input_shape": [1, 28, 28]})
    convs = [m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128]
    assert all(c.kernel_size == (5, 5) for c in convs)
    assert model.backbone.stage_dims == {"gap": 128, "fc1": 512, "features": 64}
    assert sum(isinstance(m, torch.nn.PReLU) for m in model.backbone.modules()) == 8


@pytest.mark.parametrize("depth,blocks", [(20, 9), (56, 27)])
def test_resnet_depth(depth, blocks):
    model = build_model({"backbone": "resnet", "head": "softmax", "num_classes": 10, "input_shape": [3, 32, 32],
                         "backbone_args": {"depth": depth}})
    n_blocks = sum(type(m).__name__ == "BasicBlock" for m in model.modules())
    assert n_blocks == blocks
    with pytest.raises(ConfigError, match="6n"):
        build_model({"backbone": "resnet", "head": "softmax", "num_classes": 10, "input_shape": [3, 32, 32],
                     "backbone_args": {"depth": 21}})


def test_normalization_lives_in_the_model():
    cfg = {"backbone": "mlp", "head": "softmax", "num_classes": 3, "input_shape": [1, 8, 8]}
    torch.manual_seed(1)
    plain = build_model(cfg)
    torch.manual_seed(1)
    normed = build_model({**cfg, "normalize": {"mean": [0.5], "std": [0.25]}})
    x = torch.rand(4, 1, 8, 8)
    assert torch.allclose(normed(x), plain((x - 0.5) / 0.25), atol=1e-6)


def test_config_round_trip_and_digest():
    cfg = ModelConfig.from_dict({"backbone": "lenet", "head": "softmax", "num_classes": 10, "input_shape": [1, 28, 28]})
    again = ModelConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.digest() == cfg.digest()
    other = ModelConfig.from_dict({**cfg.to_dict(), "num_classes": 9})
    assert other.digest() != cfg.digest()


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"backbone": "nope", "head": "softmax", "num_classes": 10, "input_shape": [1, 8, 8]}, "unknown backbone"),
        ({"backbone": "mlp", "head": "nope", "num_classes": 10, "input_shape": [1, 8, 8]}, "unknown head"),
        ({"backbone": "mlp", "head": "softmax", "num_classes": 1, "input_shape": [1, 8, 8]}, "num_classes"),
        ({"backbone": "mlp", "head": "softmax", "num_classes": 10, "input_shape": [2, 8, 8]}, "channels"),
        ({"backbone": "mlp", "head": "softmax", "num_classes": 10, "input_shape": [8, 8]}, "input_shape"),
        ({"backbone": "mlp", "head": "softmax", "num_classes": 10}, "missing"),
        ({"backbone": "mlp", "head": "softmax", "num_classes": 10, "input_shape": [1, 8, 8], "x": 1}, "unknown"),
        ({"backbone": "mlp", "head": "softmax", "num_classes": 10, "input_shape": [1, 8, 8],
          "backbone_args": {"nonsense": 3}}, "invalid arguments"),
    ],
)
def test_bad_configs_fail_clearly(bad, match):
    with pytest.raises(ConfigError, match=match):
        build_model(bad)


def test_registries_list_softmax_and_reject_constant():
    assert "softmax" in HEADS and "lenet" in BACKBONES
    assert REJECT == -1
