"""Result tables as Markdown and HTML, from `summarize` rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from robustlab.core.threat import format_eps

COLUMNS: tuple[tuple[str, str], ...] = (
    ("model", "model"),
    ("training", "training"),
    ("defense", "defense"),
    ("attack", "attack"),
    ("eps", "eps"),
    ("clean_accuracy", "clean acc (95% CI)"),
    ("robust_accuracy", "robust acc (95% CI)"),
    ("success", "S"),
    ("failed", "F"),
    ("detected", "D"),
    ("mean_l2", "mean L2"),
    ("mean_linf", "mean Linf"),
    ("mean_queries", "queries"),
)


IDENTIFICATION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("accuracy", "accuracy"),
    ("fmr", "FMR"),
    ("fnmr", "FNMR"),
    ("pair_accuracy", "pair acc"),
    ("val_eer", "EER (val)"),
    ("confidence_clean", "conf clean"),
    ("confidence_adv", "conf adv"),
)
"""Identification metrics (paper 002 eq. 3.1-3.3) shown by the CLI and the report: (key, heading)."""


def format_value(key: str, value: Any) -> str:
    if key == "eps":
        return format_eps(value)
    if value is None:
        return "-"
    if key.endswith("accuracy") or key.endswith("_rate"):
        return f"{100 * value:.1f}%"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def table_cells(rows: Sequence[dict[str, Any]], model_names: dict[str, str] | None = None) -> list[list[str]]:
    names = model_names or {}
    out = []
    for r in rows:
        cells = []
        for key, _ in COLUMNS:
            value = r.get(key)
            if key == "model":
                value = names.get(value, value)
            iv = (r.get("intervals") or {}).get(key)
            cells.append(format_value(key, value) + (f" ({100 * iv['ci_low']:.1f}-{100 * iv['ci_high']:.1f})"
                                                     if iv and value is not None else ""))
        out.append(cells)
    return out


def markdown_table(rows: Sequence[dict[str, Any]], model_names: dict[str, str] | None = None) -> str:
    header = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    sep = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(c) + " |" for c in table_cells(rows, model_names)]
    return "\n".join([header, sep, *body])
