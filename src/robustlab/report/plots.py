"""Plots for the report, rendered to PNG bytes (matplotlib, Agg backend).

Every function takes ``style``: "light" (dark ink on white) or "dark" (light ink on the
report's dark background), so the HTML page can show the variant matching the reader's
colour scheme.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_STYLES = {
    "light": {"bg": "#ffffff", "fg": "#1d1f23", "grid": "#c9ced6"},
    "dark": {"bg": "#1b1e23", "fg": "#e6e8eb", "grid": "#3a4049"},
}


def style_context(style: str):
    """A matplotlib rc context drawing in the report's "light" or "dark" colours."""
    s = _STYLES[style]
    return plt.rc_context({
        "axes.facecolor": s["bg"], "figure.facecolor": s["bg"], "savefig.facecolor": s["bg"],
        "text.color": s["fg"], "axes.labelcolor": s["fg"], "xtick.color": s["fg"], "ytick.color": s["fg"],
        "axes.edgecolor": s["fg"], "grid.color": s["grid"], "legend.facecolor": s["bg"],
        "legend.edgecolor": s["grid"], "font.size": 9,
    })


@contextmanager
def _figure(style: str, size: tuple[float, float] = (5.2, 3.4)) -> Iterator[tuple[Any, Any, io.BytesIO]]:
    buf = io.BytesIO()
    with style_context(style):
        fig, ax = plt.subplots(figsize=size, dpi=100)
        yield fig, ax, buf
        fig.tight_layout()
        fig.savefig(buf, format="png")
    plt.close(fig)


def robust_accuracy_plot(rows: Sequence[dict[str, Any]], title: str, style: str = "light") -> bytes:
    """One line per attack (worst case dashed and bold): robust accuracy (%) against eps."""
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        if r["eps"] is not None:
            series[r["attack"]].append((r["eps"], 100 * r["robust_accuracy"]))
    with _figure(style) as (fig, ax, buf):
        fg = _STYLES[style]["fg"]
        for attack, points in sorted(series.items(), key=lambda kv: kv[0] == "worst-case"):
            points.sort()
            xs, ys = zip(*points, strict=True)
            worst = attack == "worst-case"
            ax.plot(xs, ys, "--" if worst else "-", color=fg if worst else None, marker="o",
                    lw=2.4 if worst else 1.4, ms=4, label=attack)
        _axes(ax, title, "robust accuracy (%)")
    return buf.getvalue()


def comparison_plot(curves: Mapping[str, Sequence[tuple[float, float]]], style: str = "light",
                    ylabel: str = "worst-case robust accuracy (%)", title: str = "") -> bytes:
    """One line per name: (eps, accuracy in [0, 1]) points, drawn in % against eps."""
    with _figure(style) as (fig, ax, buf):
        for name, points in curves.items():
            pts = sorted(points)
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, [100 * v for v in ys], marker="o", ms=4, label=name)
        _axes(ax, title, ylabel)
    return buf.getvalue()


def heatmap_plot(matrix: Sequence[Sequence[float | None]], rows: Sequence[str], cols: Sequence[str],
                 title: str, style: str = "light", xlabel: str = "", ylabel: str = "") -> bytes:
    """A matrix of values in [0, 1] as a heat map with the value (%) written in each cell."""
    import numpy as np

    data = np.array([[np.nan if v is None else float(v) for v in r] for r in matrix], dtype=float)
    size = (max(3.6, 1.0 + 0.8 * len(cols)), max(2.6, 0.9 + 0.5 * len(rows)))
    with _figure(style, size) as (fig, ax, buf):
        im = ax.imshow(data, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(cols)), labels=list(cols), rotation=30, ha="right")
        ax.set_yticks(range(len(rows)), labels=list(rows))
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                if not np.isnan(data[i, j]):
                    ax.text(j, i, f"{100 * data[i, j]:.0f}", ha="center", va="center", fontsize=8,
                            color="black" if data[i, j] > 0.6 else "white")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        fig.colorbar(im, ax=ax, fraction=0.05)
    return buf.getvalue()


def _axes(ax, title: str, ylabel: str) -> None:
    ax.set_xlabel("eps (pixel scale [0, 1])")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-2, 102)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.5)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
