"""Plots of robust accuracy versus eps, rendered to PNG bytes (matplotlib, Agg backend)."""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def robust_accuracy_plot(rows: Sequence[dict[str, Any]], title: str) -> bytes:
    """One line per attack (worst case dashed and bold): robust accuracy (%) against eps."""
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        if r["eps"] is not None:
            series[r["attack"]].append((r["eps"], 100 * r["robust_accuracy"]))
    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=110)
    for attack, points in sorted(series.items(), key=lambda kv: kv[0] == "worst-case"):
        points.sort()
        xs, ys = zip(*points, strict=True)
        worst = attack == "worst-case"
        ax.plot(xs, ys, "k--" if worst else "-", marker="o", lw=2.4 if worst else 1.4, ms=4, label=attack)
    ax.set_xlabel("eps (pixel scale [0, 1])")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def comparison_plot(worst_rows: dict[str, Sequence[dict[str, Any]]]) -> bytes:
    """Worst-case robust accuracy against eps, one line per model."""
    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=110)
    for name, rows in worst_rows.items():
        pts = sorted((r["eps"], 100 * r["robust_accuracy"]) for r in rows if r["eps"] is not None)
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, marker="o", ms=4, label=name)
    ax.set_xlabel("eps (pixel scale [0, 1])")
    ax.set_ylabel("worst-case robust accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
