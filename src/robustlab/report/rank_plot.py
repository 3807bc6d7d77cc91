"""The rank pmf plot (the paper's Figure 4): P(rank of the true label = j) per attack, PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rank_pmf_plot(
    pmfs: Mapping[str, Sequence[float]], title: str, bounds: Mapping[str, float] | None = None
) -> bytes:
    """Grouped bars of p(j), j = 1..C, one colour per attack; dashed lines at 1/K when given
    (``bounds``: label -> 1/K). Ranks beyond the last non-zero bar of any attack are cut."""
    names = list(pmfs)
    num = max((len(v) for v in pmfs.values()), default=0)
    last = max((max((j for j, p in enumerate(v) if p > 0), default=0) for v in pmfs.values()), default=0)
    ranks = list(range(1, min(num, last + 2) + 1))
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    for i, name in enumerate(names):
        values = [pmfs[name][j - 1] if j - 1 < len(pmfs[name]) else 0.0 for j in ranks]
        ax.bar([j - 0.4 + width * (i + 0.5) for j in ranks], values, width=width, label=name)
    for label, bound in (bounds or {}).items():
        ax.axhline(bound, ls="--", lw=1, color="k", alpha=0.6)
        ax.text(ranks[-1] + 0.45 if ranks else 1, bound, label, fontsize=7, va="bottom", ha="right")
    ax.set_xticks(ranks)
    ax.set_xlabel("rank j of the true label")
    ax.set_ylabel("P(rank = j)")
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
