"""Evaluation cost on metric heads: one pass gives scores and the k-NN decision (exactly what
`predict` says), attacks make no per-step `predict` calls, progress inside a cell, the plan."""

from __future__ import annotations

import pytest
import torch

from robustlab.attacks import APGD, PGD, Square
from robustlab.attacks.autoattack import AutoAttack
from robustlab.attacks.progress import reporting
from robustlab.core.contract import RobustModel
from robustlab.evaluate import AttackSpec, evaluate_grid
from robustlab.evaluate.plan import plan_grid
from robustlab.models import build_model
from robustlab.store.results import ResultStore
from robustlab.train import TrainConfig, train


@pytest.fixture(scope="module")
def knn_model(digits):
    model = build_model({"backbone": "lenet", "head": "triplet", "num_classes": 10, "input_shape": [1, 8, 8]})
    train(model, digits.x_train, digits.y_train, TrainConfig(epochs=2, seed=0))
    return model.eval()


class TwoPass(RobustModel):
    """The same model seen through the default contract only: scores by forward, decision by predict."""

    decision_from_scores = False

    def __init__(self, inner):
        super().__init__(inner.num_classes, inner.input_shape)
        self.inner = inner
        self.predict_calls = 0

    def forward(self, x):
        return self.inner(x)

    def embed(self, x):
        return self.inner.embed(x)

    @torch.no_grad()
    def predict(self, x):
        self.predict_calls += 1
        return self.inner.predict(x)

    def forward_decide(self, x):
        return RobustModel.forward_decide(self, x)


def test_forward_decide_is_forward_and_predict(knn_model, digits):
    x = digits.x_test[:200]
    noisy = (x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    for batch in (x, noisy):
        scores, decision = knn_model.forward_decide(batch)
        assert torch.equal(decision, knn_model.predict(batch))
        assert torch.equal(scores, knn_model(batch))


@pytest.mark.parametrize("make", [lambda: PGD(0.1, steps=8), lambda: APGD(0.1, steps=8),
                                  lambda: Square(0.1, queries=60)], ids=["pgd", "apgd", "square"])
def test_one_pass_attacks_equal_the_two_pass_reference(knn_model, digits, make):
    x, y = digits.x_test[:120], digits.y_test[:120]
    slow = TwoPass(knn_model).eval()
    a, b = make()(knn_model, x, y), make()(slow, x, y)
    assert torch.equal(a.success, b.success) and torch.equal(a.x_adv, b.x_adv)
    assert torch.equal(a.queries, b.queries)
    assert 0 < a.success.float().mean() < 1


def test_no_predict_call_per_step(knn_model, digits):
    x, y = digits.x_test[:60], digits.y_test[:60]
    counted = TwoPass(knn_model).eval()
    counted.forward_decide = knn_model.forward_decide  # the one-pass path, predict still counted
    APGD(0.05, steps=20)(counted, x, y)
    assert counted.predict_calls == 2  # the clean check and the final judging only


def test_progress_inside_the_ensemble(knn_model, digits):
    events = []
    with reporting(lambda *e: events.append(e)):
        AutoAttack(0.05, steps=10, n_targets=2, queries=40)(knn_model, digits.x_test[:80], digits.y_test[:80])
    members = [e[0] for e in events]
    assert "apgd" in members and any(m.startswith("apgd-t run") for m in members)
    for _member, done, total, standing in events:
        assert 0 < done <= total and 0 <= standing <= 80
    for member in set(members):
        standing = [e[3] for e in events if e[0] == member]
        assert standing == sorted(standing, reverse=True)  # samples only fall within a run


def test_plan_counts_the_passes(knn_model, digits, tmp_path):
    aa = AttackSpec("autoattack", {"steps": 10, "n_targets": 2, "queries": 50})
    plan = plan_grid([(aa.build(0.0), False), (aa.build(0.1), False), (AttackSpec("fgsm").build(0.1), True)],
                     100, costs=(1e-3, 1e-4))
    assert (plan.cells, plan.done, plan.fb, plan.f) == (3, 1, 10 + 2 * 10, 1 + (2 + 2 + 52))
    assert plan.seconds == pytest.approx(100 * (30 * 1e-3 + 57 * 1e-4))
    seen = []
    with ResultStore(tmp_path / "r") as store:
        evaluate_grid(knn_model, "m", digits.x_test[:40], digits.y_test[:40], [AttackSpec("pgd", {"steps": 3})],
                      [0.0, 0.1], store, on_plan=seen.append)
    assert seen[0].cells == 2 and seen[0].fb == 3 and "at most" in seen[0].describe()


def test_gallery_terms_follow_the_gallery():
    from robustlab.models.heads import KNNGallery

    g = torch.Generator().manual_seed(1)
    knn = KNNGallery(6, 3, k=3, normalize=False, per_class=None)
    q = torch.randn(5, 6, generator=g)

    def naive():
        return (q[:, None, :] - knn.gallery[None, :, :]).pow(2).sum(-1).clamp_min(1e-12).sqrt()

    knn.fit(torch.randn(9, 6, generator=g), torch.tensor([0, 1, 2] * 3))
    assert torch.allclose(knn.distances(q), naive(), atol=1e-5)
    knn.fit(torch.randn(4, 6, generator=g), torch.tensor([0, 0, 1, 1]))  # new buffers: class 2 gone
    assert torch.allclose(knn.distances(q), naive(), atol=1e-5)
    assert bool((knn.soft_scores(q)[:, 2] == -1e4).all())
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in knn.state_dict().items()}
    knn.load_state_dict(state)  # written in place
    assert torch.allclose(knn.distances(q), naive(), atol=1e-5)
