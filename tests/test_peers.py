"""robustlab against torchattacks, foolbox and ART on the same trained model, samples and
budget: robustlab's robust accuracy must be at most the best peer's + 1 point.

Needs the ``peers`` extra (scripts/install-peers.sh); each peer is skipped when missing.
Minimum-norm attacks are compared through the robust accuracy their distances imply at
several thresholds: a sample survives eps when the attack failed or needed more than eps.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from robustlab.attacks import FGSM, PGD, AutoAttack, CarliniWagnerL2, DeepFool, HopSkipJump

pytestmark = pytest.mark.peers
PEERS = [name for name in ("torchattacks", "foolbox", "art") if importlib.util.find_spec(name)]
if not PEERS:
    pytest.skip("no peer library installed (scripts/install-peers.sh)", allow_module_level=True)

N = 100
SLACK = 0.01 + 1e-9


class _Float32(torch.nn.Module):
    """ART feeds float64 numpy arrays; the model wants float32."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x.float())


@pytest.fixture(scope="module")
def case(attack_mlp):
    model, x, y = attack_mlp
    return model, x[:N].contiguous(), y[:N].contiguous()


def accuracy(model, x_adv, y) -> float:
    return float((model.predict(x_adv.float()) == y).float().mean())


def accuracy_at(model, x, y, x_adv, eps_grid, norm) -> list[float]:
    """Robust accuracy implied by a minimum-norm attack's outputs at each threshold."""
    p = 2 if norm == "l2" else float("inf")
    x_adv = x_adv.float()
    d = (x_adv - x).flatten(1).norm(p=p, dim=1)
    fooled = model.predict(x_adv) != y
    correct = model.predict(x) == y
    return [float((correct & ~(fooled & (d <= e + 1e-6))).float().mean()) for e in eps_grid]


def art_classifier(model):
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(_Float32(model), loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 8, 8),
                             nb_classes=10, clip_values=(0.0, 1.0))


def run_art(attack, x) -> torch.Tensor:
    return torch.from_numpy(np.asarray(attack.generate(x.numpy()), dtype=np.float32))


def fb_model(model):
    import foolbox

    return foolbox.PyTorchModel(model, bounds=(0, 1))


def peer_fixed(kind: str, model, x, y, eps: float, steps: int = 0, alpha: float = 0.0) -> dict[str, float]:
    """Robust accuracy of each installed peer's FGSM / PGD (Linf)."""
    out = {}
    if "torchattacks" in PEERS:
        import torchattacks as ta

        atk = ta.FGSM(model, eps=eps) if kind == "fgsm" else ta.PGD(model, eps=eps, alpha=alpha, steps=steps)
        out["torchattacks"] = accuracy(model, atk(x, y), y)
    if "foolbox" in PEERS:
        import foolbox as fb

        atk = fb.attacks.FGSM() if kind == "fgsm" else fb.attacks.LinfPGD(abs_stepsize=alpha, steps=steps)
        _, adv, _ = atk(fb_model(model), x, y, epsilons=eps)
        out["foolbox"] = accuracy(model, adv, y)
    if "art" in PEERS:
        from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent

        clf = art_classifier(model)
        if kind == "fgsm":
            atk = FastGradientMethod(clf, eps=eps)
        else:
            atk = ProjectedGradientDescent(clf, eps=eps, eps_step=alpha, max_iter=steps, num_random_init=1,
                                           verbose=False)
        out["art"] = accuracy(model, run_art(atk, x), y)
    return out


@pytest.mark.parametrize("eps", [0.05, 0.1])
def test_fgsm_matches_the_best_peer(case, eps):
    model, x, y = case
    ours = accuracy(model, FGSM(eps)(model, x, y).x_adv, y)
    peers = peer_fixed("fgsm", model, x, y, eps)
    assert ours <= min(peers.values()) + SLACK, (ours, peers)


@pytest.mark.parametrize("eps", [0.05, 0.1])
def test_pgd_matches_the_best_peer(case, eps):
    model, x, y = case
    steps, alpha = 20, eps / 8
    ours = accuracy(model, PGD(eps, steps=steps, step_size=alpha)(model, x, y).x_adv, y)
    peers = peer_fixed("pgd", model, x, y, eps, steps, alpha)
    assert ours <= min(peers.values()) + SLACK, (ours, peers)


L2_GRID = [0.3, 0.5, 0.8, 1.2]


def test_cw_matches_the_best_peer(case):
    model, x, y = case
    steps, search = 100, 5
    ours = accuracy_at(model, x, y, CarliniWagnerL2(steps=steps, search_steps=search)(model, x, y).x_adv,
                       L2_GRID, "l2")
    peers = {}
    if "torchattacks" in PEERS:
        import torchattacks as ta

        peers["torchattacks"] = accuracy_at(model, x, y, ta.CW(model, c=1, steps=steps, lr=0.01)(x, y),
                                            L2_GRID, "l2")
    if "foolbox" in PEERS:
        import foolbox as fb

        _, adv, _ = fb.attacks.L2CarliniWagnerAttack(binary_search_steps=search, steps=steps)(
            fb_model(model), x, y, epsilons=None)
        peers["foolbox"] = accuracy_at(model, x, y, adv, L2_GRID, "l2")
    # ART's C&W loops over samples in Python: ~3 s per sample here, too slow for the suite
    # (benchmarks/attack_speed.py compares it).
    if not peers:
        pytest.skip("no peer with a batched C&W")
    best = np.min(np.array(list(peers.values())), axis=0)
    assert bool((np.array(ours) <= best + SLACK).all()), (ours, peers)


def test_deepfool_matches_the_best_peer(case):
    model, x, y = case
    ours = accuracy_at(model, x, y, DeepFool(steps=50, overshoot=0.02)(model, x, y).x_adv, L2_GRID, "l2")
    peers = {}
    if "torchattacks" in PEERS:
        import torchattacks as ta

        peers["torchattacks"] = accuracy_at(model, x, y, ta.DeepFool(model, steps=50, overshoot=0.02)(x, y),
                                            L2_GRID, "l2")
    if "foolbox" in PEERS:
        import foolbox as fb

        atk = fb.attacks.L2DeepFoolAttack(steps=50, overshoot=0.02)
        _, adv, _ = atk(fb_model(model), x, y, epsilons=None)
        peers["foolbox"] = accuracy_at(model, x, y, adv, L2_GRID, "l2")
    if "art" in PEERS:
        from art.attacks.evasion import DeepFool as ArtDeepFool

        atk = ArtDeepFool(art_classifier(model), max_iter=50, epsilon=0.02, nb_grads=10, verbose=False)
        peers["art"] = accuracy_at(model, x, y, run_art(atk, x), L2_GRID, "l2")
    best = np.min(np.array(list(peers.values())), axis=0)
    assert bool((np.array(ours) <= best + SLACK).all()), (ours, peers)


@pytest.mark.parametrize("norm,grid", [("l2", [0.5, 0.8, 1.2, 2.0]), ("linf", [0.1, 0.15, 0.2, 0.3])])
def test_hopskipjump_matches_the_best_peer(case, norm, grid):
    if not {"foolbox", "art"} & set(PEERS):
        pytest.skip("no peer with HopSkipJump")
    model, x, y = case
    x, y = x[:30], y[:30]
    steps = 10
    torch.manual_seed(0)  # foolbox and ART draw their probes from the global generators
    np.random.seed(0)
    ours = accuracy_at(model, x, y, HopSkipJump(norm=norm, steps=steps)(model, x, y).x_adv, grid, norm)
    peers = {}
    if "foolbox" in PEERS:
        import foolbox as fb

        atk = fb.attacks.HopSkipJumpAttack(steps=steps, constraint=norm)
        _, adv, _ = atk(fb_model(model), x, y, epsilons=None)
        peers["foolbox"] = accuracy_at(model, x, y, adv, grid, norm)
    if "art" in PEERS:
        from art.attacks.evasion import HopSkipJump as ArtHSJ

        atk = ArtHSJ(art_classifier(model), norm=2 if norm == "l2" else np.inf, max_iter=steps, verbose=False)
        peers["art"] = accuracy_at(model, x, y, run_art(atk, x), grid, norm)
    best = np.min(np.array(list(peers.values())), axis=0)
    # 30 samples: one sample is 3.3 points, so the slack is one sample here
    assert bool((np.array(ours) <= best + 1 / len(x) + 1e-9).all()), (ours, peers)


def test_ensemble_is_no_weaker_than_torchattacks_autoattack(case):
    if "torchattacks" not in PEERS:
        pytest.skip("torchattacks is not installed")
    import torchattacks as ta

    model, x, y = case
    eps, steps, queries = 0.08, 20, 300
    ours = accuracy(model, AutoAttack(eps, steps=steps, queries=queries)(model, x, y).x_adv, y)
    # torchattacks' AutoAttack members (APGD-CE, APGD-T, FAB-T, Square) at the same budget
    theirs = ta.MultiAttack([
        ta.APGD(model, eps=eps, steps=steps, loss="ce"),
        ta.APGDT(model, eps=eps, steps=steps, n_classes=10),
        ta.FAB(model, eps=eps, steps=steps, multi_targeted=True, n_classes=10),
        ta.Square(model, eps=eps, n_queries=queries),
    ])
    assert ours <= accuracy(model, theirs(x, y), y) + SLACK
