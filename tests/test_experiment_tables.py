"""Experiment files that express paper tables: eps grids per attack, sweeps, a transfer matrix,
several data sets, a defenses axis, claims; the per-cell metrics; the PC + CE attack loss and
the PC layer ablation. Digits, tiny MLPs, 1-2 epochs."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch.nn import functional as F

from robustlab.attacks import PGD
from robustlab.attacks.base import input_gradient
from robustlab.attacks.objectives import bind_loss, get_attack_loss
from robustlab.cli.app import main
from robustlab.core.contract import RobustModel, batched_predict
from robustlab.core.errors import ConfigError
from robustlab.core.results import AttackResult
from robustlab.data import load_dataset
from robustlab.evaluate.cell_extras import cell_extras, detection_auc
from robustlab.evaluate.defended import defense_fit_warning
from robustlab.experiment import ExperimentSpec, run_experiment
from robustlab.experiment.plan import EvalCell, plan_experiment
from robustlab.experiment.tasks import eval_data
from robustlab.models import build_model
from robustlab.report.paper_tables import paper_tables
from robustlab.store.checkpoints import load_checkpoint
from robustlab.store.results import ResultKey, ResultStore
from robustlab.train import TrainConfig, make_objective

MLP = {"backbone": "mlp", "backbone_args": {"hidden": [32]}}
FAST = {"epochs": 2, "optimizer": "adam", "lr": 0.01}


def _doc(**extra) -> dict:
    doc = {
        "name": "t",
        "data": {"name": "digits", "n_eval": 60},
        "models": [
            {"id": "a", "model": {**MLP, "head": "softmax"}, "train": FAST},
            {"id": "b", "model": {**MLP, "head": "pcl"}, "train": {**FAST, "objective_args": {"warmup_epochs": 1}}},
        ],
        "attacks": ["fgsm", {"name": "pgd", "steps": 5, "eps": [0.1, 0.2]}],
        "eps": [0, 0.1],
    }
    doc.update(extra)
    return doc


# ------------------------------------------------------------------ planning (no data, no training)
def test_per_attack_eps_grids_plan_exactly_the_listed_cells():
    spec = ExperimentSpec.from_dict(_doc(attacks=[
        "fgsm", {"name": "pgd", "steps": 5, "eps": [0.05, 0.3]}, {"name": "deepfool"},
        {"id": "pc", "name": "pgd", "loss": "pc_ce", "eps": [0.2], "models": ["b"]}]))
    cells = set(plan_experiment(spec).cells)
    expected = {EvalCell(m, "none", "fgsm", e) for m in "ab" for e in (0.0, 0.1)}
    expected |= {EvalCell(m, "none", "pgd", e) for m in "ab" for e in (0.05, 0.3)}
    expected |= {EvalCell(m, "none", "deepfool", None) for m in "ab"}
    expected |= {EvalCell("b", "none", "pc", 0.2)}
    assert cells == expected and len(plan_experiment(spec).cells) == len(expected)


def test_sweep_expands_to_exactly_the_listed_models_with_the_value_in_each_config():
    doc = _doc(models=[
        {"id": "mct", "model": {**MLP, "head": "mct"}, "train": {**FAST, "objective_args": {"alpha": 0.3}},
         "sweep": {"objective_args.sigma": [0.05, 0.1, 0.2]}},
        {"id": "w", "model": {**MLP, "head": "softmax"}, "train": FAST,
         "sweep": {"model.backbone_args.hidden": [[8], [16]]}},
    ])
    spec = ExperimentSpec.from_dict(doc)
    assert [m.id for m in spec.models] == ["mct(sigma=0.05)", "mct(sigma=0.1)", "mct(sigma=0.2)",
                                           "w(hidden=[8])", "w(hidden=[16])"]
    for m, sigma in zip(spec.models[:3], (0.05, 0.1, 0.2), strict=True):
        assert m.train.objective_args == {"alpha": 0.3, "sigma": sigma} and m.family == "mct"
        assert m.swept == (("objective_args.sigma", sigma),)
    assert [m.model["backbone_args"]["hidden"] for m in spec.models[3:]] == [[8], [16]]
    assert doc["models"][0]["train"]["objective_args"] == {"alpha": 0.3}  # the input is not mutated


def test_several_data_sets_prefix_the_model_ids_and_transfer_stays_within_one():
    doc = _doc(data=[{"id": "d0", "name": "digits", "seed": 0}, {"id": "d1", "name": "digits", "seed": 1}],
               transfer={"sources": ["a", "b"], "targets": ["a", "b"], "attacks": ["pgd"], "eps": [0.1]})
    spec = ExperimentSpec.from_dict(doc)
    assert sorted(m.id for m in spec.models) == ["d0/a", "d0/b", "d1/a", "d1/b"]
    plan = plan_experiment(spec)
    assert len(plan.transfers) == 8 and all(t.source.split("/")[0] == t.target.split("/")[0] for t in plan.transfers)
    assert sum(t.white_box is not None for t in plan.transfers) == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"transfer": {"sources": ["a", "nope"], "targets": ["b"]}}, "'nope' is not a model of this file"),
        ({"models": [{"id": "m", "model": {**MLP, "head": "mct"}, "sweep": {"objective_args.sigmaa": [0.1]}}]},
         "sweep over unknown key 'objective_args.sigmaa'"),
        ({"models": [{"id": "m", "model": {**MLP, "head": "softmax"}, "sweep": {"learning_rate": [0.1]}}]},
         "sweep over unknown key 'learning_rate'"),
        ({"claims": [{"model": "a", "attack": "pgd", "eps": 0.3, "published": 0.5}]}, "no cell a"),
        ({"attacks": [{"name": "pgd", "stepz": 3}]}, "unknown parameters ['stepz']"),
        ({"claims": [{"model": "a", "attack": "cw", "eps": 0.1, "published": 0.5}]}, "no cell a"),
        ({"claims": [{"model": "a", "attack": "pgd", "eps": 0.1, "published": 0.5, "source": "b"}]}, "no cell a"),
    ],
)
def test_bad_experiment_is_one_clear_error_before_any_training(capsys, tmp_path, change, message):
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(_doc(**change)))  # JSON is YAML
    run_dir = tmp_path / "run"
    code = main(["run", str(path), "--out", str(run_dir)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not run_dir.exists()  # nothing trained, nothing written


# ------------------------------------------------------------------ one tiny run, shared
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tables") / "run"
    doc = _doc(
        models=[
            {"id": "a", "model": {**MLP, "head": "softmax"}, "train": FAST},
            {"id": "b", "model": {**MLP, "head": "pcl"}, "train": {**FAST, "objective_args": {"warmup_epochs": 1}}},
            {"id": "c", "model": {**MLP, "head": "softmax", "backbone_args": {"hidden": [16]}}, "train": FAST},
        ],
        attacks=["fgsm", {"name": "pgd", "steps": 5, "eps": [0.1, 0.2]}],
        defenses=[{"name": "msvdd", "models": ["a"], "projections": 16, "positive_epochs": 2, "svdd_epochs": 2,
                   "finetune_epochs": 0, "non_adaptive": True}],
        transfer={"sources": ["a", "b"], "targets": ["a", "b", "c"], "attacks": ["pgd"]},
        claims=[{"model": "b", "attack": "pgd", "eps": 0.2, "published": 0.4, "ref": "T2"},
                {"model": "c", "attack": "pgd", "eps": 0.1, "source": "a", "published": 0.9, "ref": "T6"},
                {"model": "a", "attack": "worst-case", "eps": 0.1, "published": 0.0, "ref": "W"}],
    )
    spec = ExperimentSpec.from_dict(doc)
    run_experiment(spec, run_dir)
    with ResultStore(run_dir) as store:
        tables = paper_tables(store)
        index = store.get_meta("index")
        rows = {r.key: r for r in store.rows()}
    return spec, run_dir, tables, index, rows


def _metric(rows, key):
    return rows[ResultKey(**key)].metrics


def test_transfer_diagonal_is_the_white_box_cell_and_off_diagonal_matches_a_direct_transfer(tiny_run):
    spec, run_dir, tables, index, rows = tiny_run
    for t in tables["transfer"]:
        for i, s in enumerate(t["sources"]):
            cell = next(c for c in index["cells"] if c["model"] == s and c["defense"] == "none"
                        and c["attack"] == t["attack"] and c["eps"] == t["eps"])
            j = t["targets"].index(s)
            assert t["accuracy"][i][j] == _metric(rows, cell["key"])["robust_accuracy"]
    # an off-diagonal cell against a direct computation: craft on a, judge on c
    x, y = eval_data(spec.data)
    src = load_checkpoint(run_dir / "checkpoints" / "a").eval()
    tgt = load_checkpoint(run_dir / "checkpoints" / "c").eval()
    x_adv = PGD(eps=0.1, steps=5)(src, x, y).x_adv
    expected = float((batched_predict(tgt, x_adv) == y).float().mean())
    t = next(t for t in tables["transfer"] if t["eps"] == 0.1)
    assert t["accuracy"][t["sources"].index("a")][t["targets"].index("c")] == pytest.approx(expected)


def test_claims_report_the_measured_cell_and_the_delta(tiny_run):
    _, _, tables, index, rows = tiny_run
    by_ref = {c["ref"]: c for c in tables["claims"]}
    cell = next(c for c in index["cells"] if c["model"] == "b" and c["attack"] == "pgd" and c["eps"] == 0.2)
    measured = _metric(rows, cell["key"])["robust_accuracy"]
    assert by_ref["T2"]["measured"] == measured and by_ref["T2"]["delta"] == pytest.approx(measured - 0.4)
    t = next(t for t in index["transfers"] if t["source"] == "a" and t["target"] == "c" and t["eps"] == 0.1)
    assert by_ref["T6"]["measured"] == _metric(rows, t["key"])["robust_accuracy"]
    # the worst case per sample is no better than any single attack at that eps (transfer included)
    singles = [_metric(rows, c["key"])["robust_accuracy"] for c in index["cells"]
               if c["model"] == "a" and c["defense"] == "none" and c["eps"] == 0.1]
    assert by_ref["W"]["measured"] <= min(singles)


def test_defenses_axis_built_once_and_evaluated_with_detection(tiny_run):
    spec, run_dir, tables, index, rows = tiny_run
    assert (run_dir / "defenses" / "a" / "msvdd" / "config.json").is_file()
    d_cells = [c for c in index["cells"] if c["defense"] == "msvdd"]
    assert {c["model"] for c in d_cells} == {"a"} and len(d_cells) == 4
    block = next(b for b in tables["defenses"] if b["model"] == "a")
    assert [r["defense"] for r in block["rows"]] == ["none", "msvdd"]
    for c in d_cells:
        auc = _metric(rows, c["key"])["detection_auc"]
        assert auc is None or 0.0 <= auc <= 1.0
    # non-adaptive cells: adversarials of the undefended model judged on the defended one
    x, y = eval_data(spec.data)
    base = load_checkpoint(run_dir / "checkpoints" / "a").eval()
    defended = load_checkpoint(run_dir / "defenses" / "a" / "msvdd").eval()
    with ResultStore(run_dir) as store:  # the defended model's clean accuracy, recorded beside its base's
        recorded = store.get_meta("models")[store.get_meta("defenses")["a/msvdd"]["model"]]
    test = load_dataset("digits")
    assert recorded["clean_accuracy"] == pytest.approx(
        float((batched_predict(defended, test.x_test) == test.y_test).float().mean()))
    base = load_checkpoint(run_dir / "checkpoints" / "a").eval()
    assert recorded["base_clean_accuracy"] == pytest.approx(
        float((batched_predict(base, test.x_test) == test.y_test).float().mean()))
    x_adv = PGD(eps=0.2, steps=5)(base, x, y).x_adv
    row = next(b for b in block["rows"] if b["defense"] == "msvdd")["cells"]["pgd @ 0.2"]
    assert row["non_adaptive"]["value"] == pytest.approx(float((batched_predict(defended, x_adv) == y).float().mean()))
    na = [t for t in index["transfers"] if t["defense"] == "msvdd"]
    assert sorted((t["attack"], t["eps"]) for t in na) == [("fgsm", 0.1), ("pgd", 0.1), ("pgd", 0.2)]
    # a rerun reuses the checkpoints, the cached defense and every row
    before = {k: r.metrics for k, r in rows.items()}
    run_experiment(spec, run_dir)
    with ResultStore(run_dir) as store:
        assert {r.key: r.metrics for r in store.rows()} == before


def test_per_cell_metrics_against_direct_computation(tiny_run):
    spec, run_dir, tables, index, rows = tiny_run
    x, y = eval_data(spec.data)
    model = load_checkpoint(run_dir / "checkpoints" / "a").eval()
    cell = next(c for c in index["cells"] if c["model"] == "a" and c["attack"] == "fgsm" and c["eps"] == 0.1
                and c["defense"] == "none")
    row = rows[ResultKey(**cell["key"])]
    from robustlab.attacks import FGSM

    x_adv = FGSM(eps=0.1)(model, x, y).x_adv
    with torch.no_grad():
        conf = torch.softmax(model(x_adv), 1).amax(1)
    assert row.per_sample["confidence"] == pytest.approx(conf.tolist(), abs=1e-5)
    assert row.metrics["mean_confidence"] == pytest.approx(float(conf.mean()), abs=1e-5)
    mse = ((x_adv.double() - x.double()) ** 2).flatten(1).mean(1)
    assert row.per_sample["mse"] == pytest.approx(mse.tolist(), rel=1e-5, abs=1e-9)
    assert "ssim" in row.per_sample and all(0.0 <= v <= 1.0 + 1e-6 for v in row.per_sample["ssim"])


def test_ka3_rank_pmf_and_detection_auc_in_cell_extras():
    torch.manual_seed(0)
    model = build_model({**MLP, "head": "softmax", "num_classes": 10, "input_shape": [1, 8, 8]}).eval()
    x = torch.rand(30, 1, 8, 8)
    y = torch.randint(0, 10, (30,))
    x_adv = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    with torch.no_grad():
        pred = model.predict(x_adv)
    result = AttackResult(x_adv, pred != y, torch.zeros(30), torch.zeros(30, dtype=torch.int64), pred)
    per_sample, metrics = cell_extras(model, x, y, result, attack_name="ka3", K=3)
    with torch.no_grad():
        s = model(x_adv)
    naive_ranks = [1 + sum(int(s[i, j] > s[i, y[i]]) for j in range(10)) for i in range(30)]
    assert per_sample["rank"] == naive_ranks
    pmf = [naive_ranks.count(j) / 30 for j in range(1, 11)]
    assert metrics["rank_pmf"] == pytest.approx(pmf)
    assert metrics["ka3_check"]["passed"] == (max(pmf) <= 1 / 3 + 0.02)
    assert "detection_auc" not in metrics  # a model that cannot reject has no detection score
    clean, adv = torch.randn(40), torch.randn(25) + 0.5
    pairs = sum(float(a > c) + 0.5 * float(a == c) for a in adv for c in clean) / (40 * 25)
    assert detection_auc(clean, adv) == pytest.approx(pairs)


# ------------------------------------------------------------------ paper 004: PC + CE, layer ablation
def _pcl_model(**head_args):
    torch.manual_seed(0)
    cfg = {"backbone": "mlp", "backbone_args": {"hidden": [16, 12]}, "head": "pcl", "num_classes": 4,
           "input_shape": [1, 4, 4], "head_args": head_args}
    return build_model(cfg).eval()


def _naive_pc(f, centres, y):
    out = []
    for i in range(len(y)):
        d = [float(torch.linalg.vector_norm(f[i].double() - centres[j].double())) for j in range(len(centres))]
        out.append(d[int(y[i])] - sum(d[j] for j in range(len(d)) if j != int(y[i])) / (len(d) - 1))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("features_pc", [True, False])
def test_pc_ce_attack_loss_against_a_naive_loop(features_pc):
    model = _pcl_model(branches={"fc1": 0}, features_pc=features_pc,
                       decision="prototype" if features_pc else "softmax")
    x, y = torch.rand(6, 1, 4, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    grad, scores, loss = input_gradient(model, x, bind_loss(get_attack_loss("pc_ce"), y, None, 4))
    with torch.no_grad():
        stages = model.forward_stages(x)
        f = stages["features"]
        expected = F.cross_entropy(model.head.logits(f), y, reduction="none").double()
        expected += _naive_pc(stages["fc1"], model.head.branch_centres["fc1"], y)
        if features_pc:
            expected += _naive_pc(f, model.head.centres, y)
        assert torch.allclose(scores, model(x))
    assert torch.allclose(loss.double(), expected, atol=1e-5)
    assert grad.shape == x.shape and grad.abs().sum() > 0
    # the attack suite takes it: PGD on pc_ce stays in the ball and raises the joint loss
    adv = PGD(eps=0.1, steps=10, loss="pc_ce", random_start=False)(model, x, y).x_adv
    assert (adv - x).abs().max() <= 0.1 + 1e-6
    _, _, loss_adv = input_gradient(model, adv, bind_loss(get_attack_loss("pc_ce"), y, None, 4))
    assert loss_adv.sum() > loss.sum()


def test_pc_ce_refuses_a_model_without_a_pcl_head():
    model = build_model({**MLP, "head": "softmax", "num_classes": 4, "input_shape": [1, 4, 4]}).eval()
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(ConfigError, match="pcl head"):
        PGD(eps=0.1, steps=2, loss="pc_ce")(model, x, model.predict(x))  # correct clean: attacked


def test_layer_ablation_pc_on_chosen_taps_only():
    """features_pc=False with one branch: the PCL objective is CE + PC on that tap alone."""
    model = _pcl_model(branches={"fc1": 0}, features_pc=False, decision="softmax")
    model.train()
    obj = make_objective("pcl", model, warmup_epochs=0, init_from_batch=False, separation=1.0)
    x, y = torch.rand(8, 1, 4, 4), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    out = obj(model, x, y, epoch=1)
    with torch.no_grad():
        stages = model.forward_stages(x)
        ce = F.cross_entropy(model.head.logits(stages["features"]), y)
        c = model.head.branch_centres["fc1"]
        dc = torch.cdist(c.double(), c.double())
        pc = _naive_pc(stages["fc1"], c, y) - torch.stack([dc[int(t)].sum() / 3 for t in y])
    assert out.loss.item() == pytest.approx(float(ce) + float(pc.mean()), abs=1e-5)
    with pytest.raises(ConfigError, match="features_pc"):
        _pcl_model(features_pc=False, decision="prototype")  # without trained final prototypes


def test_train_section_passes_through_to_train_config():
    doc = _doc()
    doc["models"][0]["train"] = {**FAST, "weight_decay": 0.0, "milestones": [0.3, 0.6], "schedule": "step"}
    spec = ExperimentSpec.from_dict(copy.deepcopy(doc))
    assert spec.models[0].train == TrainConfig(**{**FAST, "weight_decay": 0.0, "milestones": (0.3, 0.6),
                                                  "schedule": "step"})
    doc["models"][0]["train"] = {**FAST, "optimizer": "rmsprop"}
    with pytest.raises(ConfigError, match="rmsprop"):
        ExperimentSpec.from_dict(doc)


def test_rejecting_model_detection_auc_uses_the_reject_score():
    class Rejector(RobustModel):
        can_reject = True

        def __init__(self):
            super().__init__(2, (1, 2, 2))
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x):
            m = x.flatten(1).mean(1, keepdim=True)
            return torch.cat([1 - m, m, 4 * m - 2], dim=1)  # reject column rises with brightness

    model = Rejector()
    x = torch.full((10, 1, 2, 2), 0.2)
    x_adv = torch.full((10, 1, 2, 2), 0.9)
    y = torch.zeros(10, dtype=torch.long)
    pred = model.decide(model(x_adv))
    result = AttackResult(x_adv, torch.zeros(10, dtype=torch.bool), torch.zeros(10), torch.zeros(10, dtype=torch.int64),
                          pred)
    _, metrics = cell_extras(model, x, y, result)
    assert metrics["detection_auc"] == 1.0
    assert metrics["similarity"] is None and "mean_ssim" not in metrics  # 2x2: too small for SSIM, left out


def test_two_data_sets_in_one_file_run_into_one_store(tmp_path):
    doc = _doc(data=[{"id": "d0", "name": "digits", "seed": 0, "n_eval": 30},
                     {"id": "d1", "name": "digits", "seed": 1, "n_eval": 30}],
               models=[{"id": "a", "model": {**MLP, "head": "softmax"}, "train": {**FAST, "epochs": 1}}],
               attacks=["fgsm"], eps=[0.1])
    run_experiment(ExperimentSpec.from_dict(doc), tmp_path / "run")
    with ResultStore(tmp_path / "run") as store:
        index = store.get_meta("index")
        assert set(store.get_meta("datasets")) == {"d0", "d1"}
        rows = {r.key.model: r for r in store.rows() if r.key.kind == "attack"}
    assert set(index["models"]) == {"d0/a", "d1/a"}
    keys = {m["key"] for m in index["models"].values()}
    assert set(rows) == keys and len(keys) == 2  # one model per data set, each with its own key
    # each data set's cell is evaluated on its own split
    for m in index["models"].values():
        x, y = eval_data(ExperimentSpec.from_dict(doc).dataset(m["data"]))
        assert rows[m["key"]].per_sample["y"] == y.tolist()
    assert rows[index["models"]["d0/a"]["key"]].per_sample["y"] != rows[index["models"]["d1/a"]["key"]].per_sample["y"]


def test_a_randomized_defense_is_attacked_with_eot_and_keyed_so(tmp_path):
    """A MagNet pack draws an autoencoder per image: the experiment attacks it with EOT (the
    parameter in its rows' keys, as `evaluate` does), the undefended model without."""
    doc = _doc(models=[{"id": "a", "model": {**MLP, "head": "softmax"}, "train": {**FAST, "epochs": 1}}],
               defenses=[{"name": "magnet", "structure": [4, "pool", 4], "epochs": 1, "n_pack": 2,
                          "detectors": ["recon:2"]}],
               attacks=["fgsm"], eps=[0.1], transfer=None, claims=None)
    run_experiment(ExperimentSpec.from_dict(doc), tmp_path / "run")
    with ResultStore(tmp_path / "run") as store:
        attacks = {r.key.defense.split("(")[0]: json.loads(r.key.attack) for r in store.rows()
                   if r.key.kind == "attack"}
    assert set(attacks) == {"none", "magnet"}
    assert "eot" not in attacks["none"]
    assert attacks["magnet"]["eot"] > 1


@pytest.mark.parametrize(("accuracy", "base", "warned"), [
    (0.10, 0.90, True),    # at chance: the defense did not fit
    (0.49, 0.90, True),    # below chance + half of (0.90 - 0.10) = 0.50
    (0.50, 0.90, False),
    (0.85, 0.90, False),
    (None, 0.90, False),   # nothing measured (a cached defense from an older run)
])
def test_defense_warning_fires_below_half_of_the_base_models_margin_over_chance(accuracy, base, warned):
    assert (defense_fit_warning(accuracy, base, 10) is not None) is warned


def test_identification_takes_its_reference_eps_from_every_attack_grid(tmp_path):
    """A file whose default `eps:` is [0] and whose attacks carry their own grids still gets its
    identification metrics under attack, at the reference eps of all the grids together."""
    doc = _doc(models=[{"id": "a", "model": {**MLP, "head": "softmax"}, "train": {**FAST, "epochs": 1}}],
               attacks=[{"name": "fgsm", "eps": [0.05, 0.2]}, {"name": "pgd", "steps": 3, "eps": [0.1, 0.3]}],
               eps=[0], transfer=None, claims=None)
    spec = ExperimentSpec.from_dict(doc)
    assert spec.eps_grid == (0.0, 0.05, 0.1, 0.2, 0.3)
    run_experiment(spec, tmp_path / "run")
    with ResultStore(tmp_path / "run") as store:
        rows = store.rows(kind="identification")
    assert len(rows) == 1 and rows[0].key.eps == 0.1  # the largest budget <= 0.1
