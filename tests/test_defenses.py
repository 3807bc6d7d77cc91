"""Paper 002's defenses: squeezers against naive references, the HSV round trip, distillation's
soft labels, detector thresholds at the stated FPR, checkpoint round trips, bad parameters."""

from __future__ import annotations

import colorsys
import json

import kornia
import pytest
import torch

from robustlab.core.contract import REJECT, batched_predict
from robustlab.core.errors import CheckpointError, ConfigError
from robustlab.defenses import (
    MagNetModel,
    SqueezeDetector,
    build_defense,
    check_defense_params,
    fit_threshold,
    make_squeezer,
    soft_labels,
)
from robustlab.defenses.distill import check_distillable
from robustlab.models import build_model
from robustlab.store import load_checkpoint, save_checkpoint


def _image(shape=(2, 3, 5, 6), seed=0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- squeezers vs naive references
def _naive_window(x: torch.Tensor, k: int, reduce) -> torch.Tensor:
    """Window K x K at (i, j) covering rows i-(k-1)//2 .. i+k//2, torch-style reflect padding, by loops."""
    n, c, h, w = x.shape
    lo = (k - 1) // 2

    def reflect(i: int, size: int) -> int:
        if i < 0:
            return -i
        if i >= size:
            return 2 * (size - 1) - i
        return i

    out = torch.empty_like(x)
    for a in range(n):
        for ch in range(c):
            for i in range(h):
                for j in range(w):
                    vals = [float(x[a, ch, reflect(i - lo + di, h), reflect(j - lo + dj, w)])
                            for di in range(k) for dj in range(k)]
                    out[a, ch, i, j] = reduce(vals)
    return out


def _upper_median(vals):
    return sorted(vals)[len(vals) // 2]


@pytest.mark.parametrize("k", [2, 3])
def test_median_matches_naive_loop(k):
    x = _image()
    assert torch.allclose(make_squeezer(f"median:{k}")(x), _naive_window(x, k, _upper_median), atol=1e-7)


def test_median_3_matches_kornia_and_mean_matches_kornia():
    x = _image((1, 1, 7, 7), seed=3)
    assert torch.allclose(make_squeezer("median:3")(x), kornia.filters.median_blur(x, (3, 3)))
    assert torch.allclose(make_squeezer("mean:3")(x), kornia.filters.box_blur(x, (3, 3)), atol=1e-6)


@pytest.mark.parametrize("k", [2, 3])
def test_mean_matches_naive_loop_and_algorithm3(k):
    x = _image(seed=1)
    got = make_squeezer(f"mean:{k}")(x)
    assert torch.allclose(got, _naive_window(x, k, lambda v: sum(v) / len(v)), atol=1e-6)
    if k == 3:  # Algorithm 3: convolve with ones((3, 3)) / 9; equal away from the border
        ref = torch.nn.functional.conv2d(x.view(-1, 1, 5, 6), torch.ones(1, 1, 3, 3) / 9).view(2, 3, 3, 4)
        assert torch.allclose(got[..., 1:-1, 1:-1], ref, atol=1e-6)


@pytest.mark.parametrize("bits", [1, 3, 8])
def test_bit_depth_matches_naive_loop(bits):
    x = _image(seed=2)
    levels = 2**bits - 1
    ref = torch.tensor([round(float(v) * levels) / levels for v in x.flatten()]).view_as(x)
    assert torch.allclose(make_squeezer(f"bits:{bits}")(x), ref, atol=1e-7)


def _algorithm2_pixel(rgb, bits_loop):
    """Paper 002's Algorithm 2 on one pixel, with Python's colorsys (H, S, V in [0, 1])."""
    hsv = list(colorsys.rgb_to_hsv(*rgb))
    for ch in range(3):
        for i in bits_loop:
            hsv[ch] = round(hsv[ch] * (2**i - 1)) / (2**i - 1)
    hsv[0] %= 1.0
    return colorsys.hsv_to_rgb(*hsv)


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_hsv_squeeze_matches_colorsys_algorithm(bits):
    x = _image((1, 3, 4, 5), seed=4)
    got = make_squeezer(f"hsv:{bits}")(x)
    ref = torch.empty_like(x)
    for i in range(4):
        for j in range(5):
            ref[0, :, i, j] = torch.tensor(_algorithm2_pixel(x[0, :, i, j].tolist(), [bits]))
    assert torch.allclose(got, ref, atol=2e-5)


def test_algorithm2_as_printed_is_one_bit():
    """Looping i = 1..7 over the same channel leaves the 1-bit result: hsv:1."""
    x = _image((1, 3, 3, 3), seed=5)
    got = make_squeezer("hsv:1")(x)
    for i in range(3):
        for j in range(3):
            ref = torch.tensor(_algorithm2_pixel(x[0, :, i, j].tolist(), range(1, 8)))
            assert torch.allclose(got[0, :, i, j], ref, atol=2e-5)


def test_hsv_round_trip_exact_without_rounding():
    """Pixels whose H, S and V already lie on the 3-bit grid come back unchanged; so does
    kornia's plain RGB -> HSV -> RGB round trip on any pixel (to float precision)."""
    levels = 7
    v = torch.arange(1, levels + 1) / levels  # V on the grid
    s = torch.arange(0, levels + 1) / levels  # S on the grid, H = 0 (red family)
    vv, ss = torch.meshgrid(v, s, indexing="ij")
    r, gb = vv, vv * (1 - ss)
    x = torch.stack([r, gb, gb]).unsqueeze(0)  # (1, 3, 7, 8)
    assert torch.allclose(make_squeezer("hsv:3")(x), x, atol=1e-6)
    grey = _image((1, 1, 4, 4)).mul(levels).round().div(levels)
    assert torch.equal(make_squeezer("hsv:3")(grey), grey)
    any_pixels = _image((2, 3, 6, 6), seed=6)
    back = kornia.color.hsv_to_rgb(kornia.color.rgb_to_hsv(any_pixels))
    assert torch.allclose(back, any_pixels, atol=1e-5)


def test_bpda_gradient_nonzero_where_true_gradient_is_zero():
    x = _image((1, 3, 4, 4), seed=7).requires_grad_(True)
    for spec in ("bits:1", "hsv:2", "median:2"):
        sq = make_squeezer(spec)
        (g_bpda,) = torch.autograd.grad(sq(x).sum(), x)
        sq.bpda = False
        out = sq(x)
        g_true = torch.autograd.grad(out.sum(), x, allow_unused=True)[0] if out.requires_grad else None
        true_zero = g_true is None or float(g_true.abs().max()) == 0.0 or spec == "median:2"
        assert float(g_bpda.abs().min()) > 0, spec  # identity backward reaches every pixel
        if spec != "median:2":
            assert true_zero, spec  # rounding: zero gradient almost everywhere


# ---------------------------------------------------------------- distillation
def test_soft_labels_equal_softmax_at_temperature():
    z = torch.randn(6, 4, generator=torch.Generator().manual_seed(0)) * 30
    for t in (1.0, 20.0, 100.0):
        q = soft_labels(z, t)
        ref = torch.exp(z / t) / torch.exp(z / t).sum(dim=1, keepdim=True)
        assert torch.allclose(q, ref, atol=1e-6) and torch.allclose(q.sum(1), torch.ones(6))


def test_distillation_refuses_metric_heads():
    knn = build_model({"backbone": "mlp", "head": "triplet", "num_classes": 10, "input_shape": [1, 8, 8]})
    with pytest.raises(ConfigError, match="no soft labels"):
        check_distillable(knn)


# ---------------------------------------------------------------- thresholds
@pytest.mark.parametrize("fpr", [0.01, 0.05, 0.2, 0.5])
def test_threshold_gives_stated_fpr_on_fitting_data(fpr):
    scores = torch.rand(397, generator=torch.Generator().manual_seed(1))
    t = fit_threshold(scores, fpr)
    assert abs(float((scores > t).float().mean()) - fpr) <= 1 / len(scores)


def test_detector_threshold_fpr_on_validation_data(digits_mlp, digits):
    det = SqueezeDetector(digits_mlp, ["bits:2", "median:2"]).eval()
    x_val = digits.x_train[:300]
    det.fit_threshold(x_val, 0.1)
    rejected = float((batched_predict(det, x_val) == REJECT).float().mean())
    assert abs(rejected - 0.1) <= 1 / 300
    # the reject column wins the argmax exactly when the score exceeds the threshold
    assert torch.equal(det.decide(det(x_val)), det.predict(x_val))


# ---------------------------------------------------------------- bad parameters
@pytest.mark.parametrize(
    "name, params, match",
    [
        ("squeeze", {"squeezers": ["bits:0"]}, "1..8"),
        ("squeeze", {"squeezers": ["blur:3"]}, "unknown squeezer"),
        ("squeeze-detector", {"fpr": 1.5}, "false-positive rate"),
        ("squeeze-detector", {"fpr": 0.0}, "false-positive rate"),
        ("distillation", {"temperature": 0}, "T must be > 0"),
        ("distillation", {"temperature": -3}, "T must be > 0"),
        ("magnet", {"fpr": 1.0}, "false-positive rate"),
        ("magnet", {"detectors": ["psnr"]}, "unknown MagNet detector"),
        ("magnet", {"epochs": 1, "bogus": 3}, "bogus"),
        ("nonsense", {}, "unknown defense"),
    ],
)
def test_bad_parameters_fail_before_training(name, params, match, digits, monkeypatch):
    import importlib

    distill, magnet, squeeze = (importlib.import_module(f"robustlab.defenses.{m}")
                                for m in ("distill", "magnet", "squeeze"))

    def boom(*a, **k):  # nothing may be trained or fitted
        raise AssertionError("trained despite bad parameters")

    for module, attr in ((distill, "distill"), (magnet, "build_magnet"), (squeeze, "SqueezeDetector"),
                         (squeeze, "SqueezedModel")):
        monkeypatch.setattr(module, attr, boom)
    with pytest.raises(ConfigError, match=match):
        check_defense_params(name, **params)
    model = build_model({"backbone": "mlp", "head": "softmax", "num_classes": 10, "input_shape": [1, 8, 8]})
    with pytest.raises(ConfigError, match=match):
        build_defense(name, model, digits, **params)


# ---------------------------------------------------------------- checkpoints
FAST = {
    "distillation": {"temperature": 20, "epochs": 2, "lr": 0.01},
    "squeeze": {"squeezers": ["bits:3", "median:2"]},
    "squeeze-detector": {"squeezers": ["bits:2", "mean:2"], "fpr": 0.05},
    "magnet": {"structure": [4, "pool", 4], "epochs": 2, "n_pack": 2, "detectors": ["recon:2", "jsd:10"]},
    "msvdd": {"projections": 8, "positive_epochs": 2, "svdd_epochs": 2, "finetune_epochs": 0},
}


@pytest.fixture(scope="module")
def defended(digits_mlp, digits):
    return {name: build_defense(name, digits_mlp, digits, **p).model for name, p in FAST.items()}


@pytest.mark.parametrize("name", sorted(FAST))
def test_checkpoint_round_trip(defended, digits, tmp_path, name):
    model = defended[name]
    save_checkpoint(model, tmp_path / name)
    loaded = load_checkpoint(tmp_path / name)
    assert type(loaded) is type(model) and loaded.defense_spec() == model.defense_spec()
    x = digits.x_test[:64]
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(0)
    b = loaded(x)
    assert torch.allclose(a, b, atol=1e-6)
    if not getattr(model, "randomized", False):
        assert torch.equal(model.predict(x), loaded.predict(x))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_checkpoint_refuses_a_defense_that_does_not_match_the_weights(defended, tmp_path):
    save_checkpoint(defended["squeeze"], tmp_path / "sq")
    cfg_path = tmp_path / "sq" / "config.json"
    doc = json.loads(cfg_path.read_text())
    # same tensor names (a transform over the same base) but a different defense: refused
    from robustlab.models import ModelConfig
    from robustlab.store.checkpoints import checkpoint_digest

    doc["defense"] = {"name": "squeeze", "args": {"squeezers": ["bits:1"]}}
    doc["digest"] = checkpoint_digest(ModelConfig.from_dict(doc["model"]), doc["defense"])
    cfg_path.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="does not match the weights"):
        load_checkpoint(tmp_path / "sq")
    # a defense with other tensors: refused by the tensor check
    save_checkpoint(defended["magnet"], tmp_path / "mg")
    cfg_path = tmp_path / "mg" / "config.json"
    doc = json.loads(cfg_path.read_text())
    doc["defense"]["args"]["n_pack"] = 1
    doc["digest"] = checkpoint_digest(ModelConfig.from_dict(doc["model"]), doc["defense"])
    cfg_path.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(tmp_path / "mg")


def test_magnet_pack_is_randomized_and_declares_it(defended, digits):
    mg = defended["magnet"]
    assert isinstance(mg, MagNetModel) and mg.randomized and mg.gradient_path == "bpda+eot"
    x = digits.x_test[:32]
    assert not torch.equal(mg(x), mg(x))


def test_distillation_warm_start_scales_the_logits_by_t(digits_mlp, digits):
    """init='base' starts teacher and student from W with its linear layer times T: with no
    epochs the deployed student's logits are exactly T times W's (softmax(z / T) = W's softmax)."""
    built = build_defense("distillation", digits_mlp, digits, temperature=40, init="base", epochs=0)
    x = digits.x_test[:32]
    with torch.no_grad():
        assert torch.allclose(built.model(x), 40 * digits_mlp(x), rtol=1e-5, atol=1e-4)
        assert torch.allclose(soft_labels(built.model(x), 40), digits_mlp(x).softmax(1), atol=1e-5)
    knn = build_model({"backbone": "mlp", "head": "triplet", "num_classes": 10, "input_shape": [1, 8, 8]})
    with pytest.raises(ConfigError):
        build_defense("distillation", knn, digits, init="base", epochs=0)
