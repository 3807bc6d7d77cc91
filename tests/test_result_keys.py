"""The result key holds everything that can change a number: the same run directory with a
different --n-eval, data set, attack default or batch size never returns another run's numbers."""

from __future__ import annotations

import json

import pytest
import torch

from robustlab.attacks import FGSM, Square
from robustlab.attacks.pgd import PGD
from robustlab.cli.app import main
from robustlab.core.runtime import seeded
from robustlab.data import load_dataset, write_image
from robustlab.evaluate import AttackSpec, EvalSet, evaluate_grid, plan_cells, run_attack, summarize
from robustlab.models import build_model
from robustlab.store import ResultStore
from robustlab.store.checkpoints import save_checkpoint
from robustlab.train import TrainConfig, train


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    data = load_dataset("digits", seed=0)
    with seeded(1):
        model = build_model({"backbone": "mlp", "head": "softmax", "num_classes": 10, "input_shape": [1, 8, 8]})
    train(model, data.x_train, data.y_train, TrainConfig(epochs=2, optimizer="adam", lr=0.003, seed=1))
    meta = {"data": {"name": "digits", "seed": 0}}
    return save_checkpoint(model.eval(), tmp_path_factory.mktemp("keys") / "ckpt", metadata=meta)


def _evaluate(capsys, *args) -> dict:
    assert main(["evaluate", *map(str, args), "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_n_eval_and_data_set_are_in_the_key(capsys, ckpt, tmp_path):
    run = tmp_path / "run"
    common = ["--model", ckpt, "--attack", "fgsm", "--attack", "pgd", "--steps", "3", "--eps", "0.1",
              "--out", run]
    first = _evaluate(capsys, *common, "--n-eval", "100")
    second = _evaluate(capsys, *common, "--n-eval", "40")
    assert {r["n"] for r in first["rows"]} == {100} and {r["n"] for r in second["rows"]} == {40}
    assert {r["samples"] for r in first["rows"]} != {r["samples"] for r in second["rows"]}
    # the n = 40 numbers are those of a fresh run directory, not the n = 100 ones
    fresh = _evaluate(capsys, *common[:-1], tmp_path / "fresh", "--n-eval", "40")
    def numbers(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert numbers(second["rows"]) == numbers(fresh["rows"])
    # a folder of 8x8 images in 10 classes: the same model and attacks, other numbers, other keys
    g = torch.Generator().manual_seed(5)
    for c in range(10):
        for i in range(4):
            write_image(torch.rand(1, 8, 8, generator=g), tmp_path / "imgs" / str(c) / f"{i}.png")
    folder = _evaluate(capsys, *common, "--data", f"folder:{tmp_path / 'imgs'}")
    assert {r["data"] for r in folder["rows"]} == {f"folder:{tmp_path / 'imgs'}"}
    assert {r["n"] for r in folder["rows"]} == {10}
    # the report holds all three sample sets apart: it works, and no worst case mixes them
    assert main(["report", str(run)]) == 0
    with ResultStore(run, readonly=True) as store:
        rows = summarize(store)
    worst = [r for r in rows if r["attack"] == "worst-case"]
    assert sorted(r["n"] for r in worst) == [10, 40, 100]
    assert len({r["samples"] for r in rows}) == 3


def test_identification_is_keyed_by_the_samples(capsys, ckpt, tmp_path):
    run = tmp_path / "run"
    a = _evaluate(capsys, "--model", ckpt, "--attack", "fgsm", "--eps", "0.1", "--n-eval", "200", "--out", run)
    b = _evaluate(capsys, "--model", ckpt, "--attack", "fgsm", "--eps", "0.1", "--n-eval", "60", "--out", run)
    clean_a = next(r for r in a["rows"] if r["eps"] == 0.1)["clean_accuracy"]
    clean_b = next(r for r in b["rows"] if r["eps"] == 0.1)["clean_accuracy"]
    assert a["identification"]["accuracy"] == pytest.approx(clean_a)
    assert b["identification"]["accuracy"] == pytest.approx(clean_b)  # recomputed for the 60, not reused


def test_a_changed_attack_default_is_a_new_key(tmp_path, digits_mlp, attack_batch, monkeypatch):
    """The key holds the resolved spec: the same typed spec under another default is recomputed."""
    x, y = attack_batch[0][:40], attack_batch[1][:40]
    store = ResultStore(tmp_path)
    spec = [AttackSpec("pgd", {"random_start": False})]
    (key,) = evaluate_grid(digits_mlp, "m", x, y, spec, [0.05], store)
    assert json.loads(key.attack)["steps"] == 40  # the default, as the attack reports it
    init = PGD.__init__.__wrapped__  # the constructor under its type-checking wrapper
    defaults = list(init.__defaults__)
    defaults[init.__code__.co_varnames[2 : 2 + len(defaults)].index("steps")] = 1
    monkeypatch.setattr(init, "__defaults__", tuple(defaults))
    (key1,) = evaluate_grid(digits_mlp, "m", x, y, spec, [0.05], store)
    assert key1 != key and json.loads(key1.attack)["steps"] == 1 and store.count() == 2
    one_step = run_attack(PGD(0.05, random_start=False, steps=1), digits_mlp, x, y)
    assert store.get(key1).per_sample["success"] == one_step.success.tolist()
    # typing the default out gives the same key as leaving it out
    monkeypatch.undo()
    (again,) = evaluate_grid(digits_mlp, "m", x, y, [AttackSpec("pgd", {"random_start": False, "steps": 40})],
                             [0.05], store)
    assert again == key and store.count() == 2


def test_batch_size_is_keyed_unless_the_attack_is_batch_independent(tmp_path, digits_mlp, attack_batch):
    x, y = attack_batch[0][:48], attack_batch[1][:48]
    store = ResultStore(tmp_path)
    specs = [AttackSpec("square", {"queries": 30}), AttackSpec("fgsm")]
    k_big = evaluate_grid(digits_mlp, "m", x, y, specs, [0.1], store, batch_size=256)
    k_small = evaluate_grid(digits_mlp, "m", x, y, specs, [0.1], store, batch_size=7)
    square_big, fgsm_big = k_big
    square_small, fgsm_small = k_small
    assert square_big != square_small and square_small.batch == "7" and square_big.batch == "256"
    assert fgsm_big == fgsm_small and fgsm_big.batch == "independent" and store.count() == 3
    # Square really depends on the batch (its random draws follow the batch), FGSM does not
    sq = [run_attack(Square(0.1, queries=30), digits_mlp, x, y, b).x_adv for b in (256, 7)]
    assert not torch.equal(sq[0], sq[1])
    assert store.get(square_small).per_sample["adv_pred"] == digits_mlp.predict(sq[1]).tolist()
    fg = [run_attack(FGSM(0.1), digits_mlp, x, y, b).x_adv for b in (256, 7)]
    assert torch.equal(fg[0], fg[1])


def test_evaluate_grid_leaves_the_model_as_it_was(digits_mlp, attack_batch, tmp_path):
    digits_mlp.train()
    try:
        evaluate_grid(digits_mlp, "m", *attack_batch, [AttackSpec("fgsm")], [0.1], ResultStore(tmp_path))
        assert digits_mlp.training
    finally:
        digits_mlp.eval()


def test_cells_are_validated_before_any_runs():
    with pytest.raises(Exception, match="steps"):
        plan_cells([AttackSpec("fgsm"), AttackSpec("pgd", {"steps": 0})], [0.1])
    cells = plan_cells([AttackSpec("pgd"), AttackSpec("pgd", {"steps": 40}), AttackSpec("deepfool")], [0, 0.1])
    assert [(c.label, c.eps) for c in cells] == [("pgd", 0.0), ("pgd", 0.1), ("deepfool", None)]
    data = EvalSet(torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]))
    assert data.digest == EvalSet(data.x.clone(), data.y.clone()).digest
    assert data.digest != EvalSet(data.x[:3], data.y[:3]).digest
