"""Computed claim verdicts, seeds in experiment files, intervals and paired comparisons in the
paper tables, defended rows with their own clean accuracy. Digits, tiny MLPs, 1 epoch."""

from __future__ import annotations

import json
import statistics

import pytest

from robustlab.core.errors import ConfigError
from robustlab.core.stats import clopper_pearson, mcnemar
from robustlab.data import load_dataset
from robustlab.evaluate.summary import compare, summarize, worst_outcomes
from robustlab.experiment import ExperimentSpec, run_experiment
from robustlab.experiment.plan import plan_experiment
from robustlab.report import verdicts
from robustlab.report.paper_render import tables_markdown, write_paper_tables
from robustlab.report.paper_tables import paper_tables
from robustlab.store.results import ResultKey, ResultStore

MLP = {"backbone": "mlp", "backbone_args": {"hidden": [16]}}
FAST = {"epochs": 1, "optimizer": "adam", "lr": 0.01}


# ------------------------------------------------------------------ verdict rules (no training)
def test_value_verdict_flips_from_held_to_inconclusive_when_the_interval_straddles_the_band():
    # 40% measured, published 42% +- 5: on 2,000 samples the interval lies inside the band ...
    low, high = clopper_pearson(800, 2000)
    assert low >= 0.37 and high <= 0.47
    assert verdicts.value_verdict(low, high, 0.42, 0.05) == verdicts.HELD
    # ... on 100 samples the same 40% straddles the band's lower edge: too few samples to say
    low, high = clopper_pearson(40, 100)
    assert low < 0.37 < high
    assert verdicts.value_verdict(low, high, 0.42, 0.05) == verdicts.INCONCLUSIVE
    # and far from the band it did not hold, whatever the sample count
    assert verdicts.value_verdict(*clopper_pearson(10, 100), 0.42, 0.05) == verdicts.FAILED


def test_comparison_verdict_and_seeds():
    assert verdicts.comparison_verdict(0.1, 0.01, 0.2, p_value=0.01) == verdicts.HELD
    assert verdicts.comparison_verdict(0.1, 0.01, 0.2, p_value=0.07) == verdicts.INCONCLUSIVE  # not significant
    assert verdicts.comparison_verdict(-0.1, -0.2, -0.01, p_value=0.01) == verdicts.FAILED
    assert verdicts.comparison_verdict(0.05, -0.05, 0.2, p_value=0.3) == verdicts.INCONCLUSIVE
    assert verdicts.comparison_verdict(0.1, 0.01, 0.2, p_value=0.01, margin=0.05) == verdicts.INCONCLUSIVE
    assert verdicts.comparison_verdict(0.01, -0.01, 0.03, p_value=0.5, margin=0.05) == verdicts.FAILED
    assert verdicts.combine([verdicts.HELD, verdicts.HELD]) == verdicts.HELD
    assert verdicts.combine([verdicts.HELD, verdicts.FAILED]) == verdicts.INCONCLUSIVE


# ------------------------------------------------------------------ seeds in the spec
def _doc(**extra) -> dict:
    doc = {
        "name": "s",
        "data": {"name": "digits", "n_eval": 80},
        "models": [{"id": "a", "model": {**MLP, "head": "softmax"}, "train": FAST},
                   {"id": "b", "model": {**MLP, "head": "softmax", "backbone_args": {"hidden": [8]}}, "train": FAST}],
        "attacks": ["fgsm", {"name": "pgd", "steps": 3}],
        "eps": [0, 0.1],
    }
    doc.update(extra)
    return doc


def _digests(spec: ExperimentSpec) -> dict[str, str]:
    data = load_dataset("digits")
    return {m.id: m.digest(spec.data, data.num_classes, data.input_shape) for m in spec.models}


def test_seeds_give_one_model_per_seed_with_distinct_keys_and_keep_the_default():
    plain = ExperimentSpec.from_dict(_doc())
    one = ExperimentSpec.from_dict(_doc(seeds=[0]))
    assert [m.id for m in plain.models] == [m.id for m in one.models] == ["a", "b"]
    assert _digests(plain) == _digests(one)  # one seed, the default: unchanged keys
    three = ExperimentSpec.from_dict(_doc(seeds=[0, 1, 2]))
    assert [m.id for m in three.models] == [f"{g}@seed{s}" for g in "ab" for s in (0, 1, 2)]
    assert [m.train.seed for m in three.models] == [0, 1, 2] * 2
    assert {m.group for m in three.models} == {"a", "b"}
    digests = _digests(three)
    assert len(set(digests.values())) == 6 and digests["a@seed0"] == _digests(plain)["a"]
    assert len(plan_experiment(three).trains) == 6
    # per model, overriding the file's list
    doc = _doc(seeds=[0, 1])
    doc["models"][1]["seeds"] = [5]
    assert [m.id for m in ExperimentSpec.from_dict(doc).models] == ["a@seed0", "a@seed1", "b"]


def test_transfer_stays_within_one_seed():
    spec = ExperimentSpec.from_dict(_doc(seeds=[0, 1], transfer={"sources": ["a"], "targets": ["a", "b"],
                                                                  "attacks": ["pgd"]}))
    transfers = plan_experiment(spec).transfers
    assert len(transfers) == 4 and all(t.source[-1] == t.target[-1] for t in transfers)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seeds": [0, 0]}, "seeds must be distinct"),
        ({"seeds": []}, "seeds must be a non-empty list"),
        ({"seeds": [0, 1], "models": [{"id": "a", "model": MLP, "train": {**FAST, "seed": 3}}]}, "not both"),
        ({"claims": [{"model": "a", "than": "nope", "attack": "pgd", "eps": 0.1}]}, "'nope' is not a model"),
        ({"claims": [{"model": "a", "attack": "pgd", "eps": 0.1, "published": 0.3, "tolerance": 2}]},
         "tolerance must be a number in [0, 1]"),
        ({"claims": [{"model": "a", "attack": "pgd", "eps": 0.1}]}, "needs 'published'"),
        ({"claims": [{"model": "a", "than": "a", "attack": "pgd", "eps": 0.1}]}, "with itself"),
        ({"claims": [{"model": "a", "than": "b", "than_defense": "nope", "attack": "pgd", "eps": 0.1}]},
         "no cell b / defense nope"),
    ],
)
def test_bad_seeds_and_claims_are_one_config_error(change, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ExperimentSpec.from_dict(_doc(**change))


# ------------------------------------------------------------------ one tiny run with two seeds
@pytest.fixture(scope="module")
def seeded_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("seeds") / "run"
    doc = _doc(
        seeds=[0, 1],
        defenses=[{"name": "squeeze", "squeezers": ["bits:1"], "models": ["a"]}],
        claims=[
            {"ref": "V", "model": "a", "attack": "pgd", "eps": 0.1, "published": 0.3, "tolerance": 0.05},
            {"ref": "C", "model": "a", "than": "b", "attack": "worst-case", "eps": 0.1},
            {"ref": "E", "model": "a", "attack": "pgd", "eps": 0.1, "published": 0.3, "paper_eps": 0.3,
             "paper_data": "MNIST", "deviations": ["smaller MLP"]},
            {"ref": "K", "model": "b", "attack": "worst-case", "metric": "clean_accuracy", "published": 0.2,
             "tolerance": 0.3},
            {"ref": "D", "model": "a", "defense": "squeeze", "than": "a", "than_defense": "none", "attack": "pgd",
             "eps": 0.1},
        ],
        deviations=["one epoch"],
    )
    spec = ExperimentSpec.from_dict(doc)
    run_experiment(spec, run_dir)
    with ResultStore(run_dir, readonly=True) as store:
        tables = paper_tables(store)
        index = store.get_meta("index")
        rows = {r.key: r for r in store.rows()}
        models = store.get_meta("models")  # each defended model is a model of its own, found by (model, defense)
        defended = {k: models[d["model"]] for k, d in store.get_meta("defenses").items()}
        outcomes = worst_outcomes(store)
        summary = summarize(store)
    return run_dir, tables, index, rows, defended, outcomes, summary


def _right(rows, key) -> list[bool]:
    p = rows[ResultKey(**key)].per_sample
    return [a == y for a, y in zip(p["adv_pred"], p["y"], strict=True)]


def test_every_summary_rate_carries_n_and_its_exact_interval(seeded_run):
    *_, summary = seeded_run
    assert summary
    for r in summary:
        k = round(r["robust_accuracy"] * r["n"])
        assert (r["ci_low"], r["ci_high"]) == pytest.approx(clopper_pearson(k, r["n"]))
        assert r["intervals"]["clean_accuracy"]["n"] == r["n"]


def test_seed_table_is_the_mean_and_spread_of_the_seed_rows(seeded_run):
    _, tables, index, *_ = seeded_run
    assert {m: index["models"][m]["key"].split(":")[0] for m in index["models"]} == {
        "a@seed0": "a@seed0", "a@seed1": "a@seed1", "b@seed0": "b@seed0", "b@seed1": "b@seed1"}
    assert len({m["key"] for m in index["models"].values()}) == 4
    grid = next(g for g in tables["grid"] if g["defense"] == "none")
    block = next(b for b in tables["seeds"] if b["defense"] == "none")
    for agg in block["rows"]:
        seeds = [r for r in grid["rows"] if r["group"] == agg["model"]]
        assert len(seeds) == 2
        values = [r["worst"]["0.1"]["value"] for r in seeds]
        assert agg["worst"]["0.1"]["mean"] == pytest.approx(statistics.mean(values))
        assert agg["worst"]["0.1"]["sd"] == pytest.approx(statistics.stdev(values))
        assert (agg["worst"]["0.1"]["min"], agg["worst"]["0.1"]["max"]) == (min(values), max(values))
    assert "## Over seeds" in tables_markdown(tables)


def test_value_claim_verdict_from_the_interval_per_seed(seeded_run):
    _, tables, index, rows, *_ = seeded_run
    claim = next(c for c in tables["claims"] if c["ref"] == "V")
    expected = []
    for seed in ("a@seed0", "a@seed1"):
        cell = next(c for c in index["cells"] if c["model"] == seed and c["attack"] == "pgd" and c["eps"] == 0.1
                    and c["defense"] == "none")
        right = _right(rows, cell["key"])
        low, high = clopper_pearson(sum(right), len(right))
        entry = next(e for e in claim["per_seed"] if e["model"] == seed)
        assert (entry["ci_low"], entry["ci_high"]) == pytest.approx((low, high))
        expected.append(verdicts.value_verdict(low, high, 0.3, 0.05))
    assert claim["verdict"] == verdicts.combine(expected)
    assert claim["seeds"]["seeds"] == 2 and "one training seed" not in claim["deviations"]
    n_test = len(load_dataset("digits").y_test)
    assert f"80 of {n_test} test images attacked" in claim["deviations"] and "one epoch" in claim["deviations"]


def test_comparison_claim_is_mcnemar_on_the_worst_case_per_sample(seeded_run):
    run_dir, tables, index, rows, _, outcomes, _ = seeded_run
    claim = next(c for c in tables["claims"] if c["ref"] == "C")
    got = []
    for seed in (0, 1):
        a, b = index["models"][f"a@seed{seed}"], index["models"][f"b@seed{seed}"]
        # naive worst case per sample: right clean and under every attack stored at eps 0.1
        def naive(model_id):
            cells = [c["key"] for c in index["cells"] if c["model"] == model_id and c["eps"] == 0.1
                     and c["defense"] == "none"]
            ok = [all(col) for col in zip(*[_right(rows, k) for k in cells], strict=True)]
            p = rows[ResultKey(**cells[0])].per_sample
            return [o and c == y for o, c, y in zip(ok, p["clean_pred"], p["y"], strict=True)]
        first, second = naive(f"a@seed{seed}"), naive(f"b@seed{seed}")
        assert outcomes[(a["key"], "none", a["samples"], 0.1)] == first
        test = mcnemar(first, second)
        entry = next(e for e in claim["per_seed"] if e["seed"] == seed)
        assert entry["p_value"] == pytest.approx(test["p_value"]) and entry["measured"] == test["difference"]
        got.append(verdicts.comparison_verdict(test["difference"], test["ci_low"], test["ci_high"], test["p_value"]))
        with ResultStore(run_dir, readonly=True) as store:
            assert compare(store, a["key"], b["key"], 0.1)["p_value"] == pytest.approx(test["p_value"])
    assert claim["verdict"] == verdicts.combine(got)
    pairs = [p for p in tables["paired"] if p["first_defense"] == p["second_defense"] == "none" and p["eps"] == 0.1]
    assert {(p["first"], p["second"]) for p in pairs} == {("a@seed0", "b@seed0"), ("a@seed1", "b@seed1")}


def test_clean_accuracy_claim_is_judged_on_the_whole_test_split(seeded_run):
    _, tables, *_ = seeded_run
    claim = next(c for c in tables["claims"] if c["ref"] == "K")
    grid = next(g for g in tables["grid"] if g["defense"] == "none")
    expected = []
    for entry in claim["per_seed"]:
        clean = next(r["clean"] for r in grid["rows"] if r["model"] == entry["model"])
        assert (entry["measured"], entry["ci_low"], entry["n"]) == (clean["value"], clean["ci_low"], clean["n"])
        expected.append(verdicts.value_verdict(clean["ci_low"], clean["ci_high"], 0.2, 0.3))
    assert claim["verdict"] == verdicts.combine(expected)


def test_defended_model_against_its_base_is_a_paired_comparison(seeded_run):
    _, tables, index, rows, *_ = seeded_run
    claim = next(c for c in tables["claims"] if c["ref"] == "D")

    def right(model_id, defense):
        cell = next(c for c in index["cells"] if c["model"] == model_id and c["attack"] == "pgd" and c["eps"] == 0.1
                    and c["defense"] == defense)
        return _right(rows, cell["key"])

    for entry in claim["per_seed"]:
        test = mcnemar(right(entry["model"], "squeeze"), right(entry["model"], "none"))
        assert (entry["measured"], entry["p_value"]) == (test["difference"], pytest.approx(test["p_value"]))
    assert "> a (undefended)" in tables_markdown(tables)


def test_claim_at_another_eps_or_data_set_is_inconclusive_and_lists_its_deviations(seeded_run):
    _, tables, *_ = seeded_run
    claim = next(c for c in tables["claims"] if c["ref"] == "E")
    assert claim["verdict"] == verdicts.INCONCLUSIVE
    assert any("paper states it at eps 0.3" in w for w in claim["why"])
    assert any("on MNIST" in w for w in claim["why"])
    assert claim["deviations"][0] == "smaller MLP"
    md = tables_markdown(tables)
    assert "not comparable" in md and "smaller MLP" in md


def test_defended_rows_carry_their_own_clean_accuracy_beside_the_base(seeded_run):
    run_dir, tables, _, _, defended, *_ = seeded_run
    grid = next(g for g in tables["grid"] if g["defense"] != "none")
    for r in grid["rows"]:
        meta = defended[f"{r['model']}/squeeze"]
        assert r["clean"]["value"] == meta["clean_accuracy"]
        assert r["clean_base"]["value"] == meta["base_clean_accuracy"]
        assert r["clean"]["n"] == len(load_dataset("digits").y_test)
        assert r["clean"]["ci_low"] < r["clean"]["value"] <= r["clean"]["ci_high"]
    written = write_paper_tables(run_dir)
    doc = json.loads(written["json"].read_text())
    assert doc["grid"] == json.loads(json.dumps(tables["grid"]))
    assert "base clean" in written["markdown"].read_text()


def _script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "paper_sections.py"
    spec = importlib.util.spec_from_file_location("paper_sections_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_paper_sections_are_regenerated_from_tables_json(seeded_run, tmp_path, capsys):
    run_dir, tables, *_ = seeded_run
    written = write_paper_tables(run_dir)
    reports = tmp_path / "reports"
    (reports / "exp").mkdir(parents=True)
    (reports / "exp" / "tables.json").write_bytes(written["json"].read_bytes())
    readme = tmp_path / "README.md"
    before = ("# Bench\n\nprose kept\n\n<!-- paper-section exp -->\nhand-written verdict: held\n"
              "<!-- /paper-section -->\n\nmiddle\n\n<!-- paper-section absent -->\nold\n<!-- /paper-section -->\n")
    readme.write_text(before)
    script = _script()
    args = ["--readme", str(readme), "--reports", str(reports)]
    assert script.main([*args, "--check"]) == 1 and readme.read_text() == before  # stale, nothing written
    assert script.main(args) == 0
    after = readme.read_text()
    assert "hand-written verdict" not in after and "prose kept" in after and "middle" in after
    assert "<!-- paper-section absent -->\nold\n" in after  # no tables.json: left as it is
    assert "absent: no" in capsys.readouterr().err
    claims = next(line for line in after.splitlines() if line.startswith("| V |"))
    assert claims.endswith(f"**{next(c for c in tables['claims'] if c['ref'] == 'V')['verdict']}** |")
    assert tables_markdown(tables, level=4, cells=False).split("\n")[0] in after
    assert script.main([*args, "--check"]) == 0


def test_every_committed_experiment_file_parses_with_its_claims_and_deviations():
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parent.parent / "experiments").glob("*.yaml"))
    assert files
    for path in files:
        spec = ExperimentSpec.from_file(path)
        assert spec.claims and spec.deviations, path.name
        assert any(c.than for c in spec.claims), path.name  # each states a comparison it can be judged on


def test_plain_evaluate_run_gets_a_paired_comparisons_section(tmp_path):
    """Two models evaluated on the same samples without an experiment: the report compares them."""
    import torch

    from robustlab.evaluate.runner import AttackSpec, evaluate_grid
    from robustlab.models import build_model
    from robustlab.report.build import write_report

    data = load_dataset("digits")
    x, y = data.x_test[:50], data.y_test[:50]
    run_dir = tmp_path / "run"
    with ResultStore(run_dir) as store:
        for i, name in enumerate(("m1", "m2")):
            torch.manual_seed(i)
            model = build_model({**MLP, "head": "softmax", "num_classes": 10, "input_shape": [1, 8, 8]}).eval()
            evaluate_grid(model, name, x, y, [AttackSpec("fgsm"), AttackSpec("pgd", {"steps": 3})], [0.0, 0.1], store)
        outcomes = worst_outcomes(store)
    first, second = (outcomes[(m, "none", s, 0.1)] for m, _, s, e in sorted(outcomes) if e == 0.1)
    expected = mcnemar(first, second)
    paths = write_report(run_dir)
    doc = json.loads(paths["json"].read_text())
    (pair,) = doc["sections"]["paired"]["data"]
    assert (pair["b"], pair["c"], pair["difference"]) == (expected["b"], expected["c"], expected["difference"])
    assert pair["p_value"] == pytest.approx(expected["p_value"])
    md = paths["markdown"].read_text()
    assert "## Paired comparisons" in md and f"| {expected['b']} / {expected['c']} |" in md
