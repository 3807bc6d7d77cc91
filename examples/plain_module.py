"""Bring your own model: a plain PyTorch network, trained with a plain PyTorch loop, attacked and
reported by robustlab. Run it: `python examples/plain_module.py --out /tmp/byom`.

The network normalizes its own input (as many do); robustlab only needs to know the number of
classes and the input shape. Its weights are saved with safetensors, so the same model can be
evaluated from the command line too:

    robustlab evaluate --module examples/plain_module.py:make_model --weights /tmp/byom/net.safetensors \\
        --data digits --attack pgd --eps 0.1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

import robustlab
from robustlab.attacks import PGD
from robustlab.data import load_dataset
from robustlab.evaluate import AttackSpec, evaluate_grid, summarize
from robustlab.report import write_report
from robustlab.store.results import ResultStore


class Net(nn.Module):
    """An ordinary classifier for 1 x 8 x 8 images in [0, 1] with its own normalization layer."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(0.3).view(1, 1, 1, 1))
        self.register_buffer("std", torch.tensor(0.4).view(1, 1, 1, 1))
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.mean) / self.std)


def make_model() -> nn.Module:
    """The factory `robustlab evaluate --module` calls (no arguments)."""
    return Net()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("byom"))
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    data = load_dataset("digits")
    torch.manual_seed(0)
    net = make_model()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(args.epochs):  # a plain training loop, nothing of robustlab's
        for idx in torch.randperm(len(data.y_train)).split(64):
            loss = nn.functional.cross_entropy(net(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    save_file(net.state_dict(), str(args.out / "net.safetensors"))

    # the two lines: wrap it, attack it
    model = robustlab.wrap(net, num_classes=10, input_shape=(1, 8, 8))
    result = PGD(eps=0.1, steps=20)(model, data.x_test, data.y_test)
    print(f"clean {(model.predict(data.x_test) == data.y_test).float().mean():.3f}, "
          f"PGD success {result.success.float().mean():.3f}")

    # and the whole pipeline: a grid into a results store, then the report
    with ResultStore(args.out / "run") as store:
        store.set_meta("models", {"net": {"id": "plain-net", "config": model.config.to_dict()}})
        evaluate_grid(model, "net", data.x_test, data.y_test, [AttackSpec("fgsm"), AttackSpec("pgd", {"steps": 10})],
                      [0.0, 0.05, 0.1], store)
        worst = [r for r in summarize(store) if r["attack"] == "worst-case"]
    print("worst case:", ", ".join(f"eps {r['eps']:g}: {100 * r['robust_accuracy']:.1f}%" for r in worst))
    print("report:", write_report(args.out / "run")["html"])


if __name__ == "__main__":
    main()
