"""Terminal output: progress bars, result tables and the final JSON line."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.table import Table

from robustlab.core.digest import label_name
from robustlab.core.progress import terminal_bar
from robustlab.core.threat import Norm, format_eps
from robustlab.report.tables import IDENTIFICATION_COLUMNS


def _console(stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    wide = None if stream.isatty() else 160  # pipes and CI logs get room for the whole table
    return Console(stderr=stderr, highlight=False, width=wide)


out = _console(stderr=False)
err = _console(stderr=True)


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator:
    """Yield a `progress(message, done, total)` callback drawing a bar on stderr (`terminal_bar`,
    the Python API's too); off a terminal, plain lines (a new task, at most one line per 30 s inside)."""
    if not enabled or not err.is_terminal and not sys.stderr.isatty():
        last: dict[str, Any] = {"task": None, "at": 0.0}

        def plain(message: str, done: int, total: int) -> None:
            """A line per new task (a cell, a model to train); inside it (" | member ...") at most
            one line per 30 s."""
            task, _, detail = message.partition(" | ")
            now = time.monotonic()
            if message == "done":
                return
            if last["task"] != task or (detail and now - last["at"] >= 30):
                err.print(f"[dim]{message}[/dim]")
                last.update(task=task, at=now)

        yield plain
        return
    with terminal_bar(err) as update:
        yield update


def _with_error(row: dict[str, Any]) -> str:
    """Robust accuracy (%) and the larger side of its Clopper-Pearson 95% interval: "38.3 ±6.9"."""
    v = row["robust_accuracy"]
    if row.get("ci_low") is None:
        return f"{100 * v:.1f}"
    return f"{100 * v:.1f} ±{100 * max(v - row['ci_low'], row['ci_high'] - v):.1f}"


def print_results(rows: Sequence[dict[str, Any]], names: dict[str, str] | None = None, title: str = "") -> None:
    """Robust accuracy (%) per (model, defense, attack) across the eps grid; worst case in bold.

    Minimum-norm attacks (eps None) show their median L2 distance instead. The full table
    (S/F/D, distances, queries) is in the report and in --json output.
    """
    names = names or {}
    grid = sorted({r["eps"] for r in rows if r["eps"] is not None})
    if 0 in grid and all(r["robust_accuracy"] == r["clean_accuracy"] for r in rows if r["eps"] == 0):
        grid.remove(0)  # eps 0 would repeat the clean column
    caption = ("robust accuracy (%) at each eps, ± the larger side of its exact 95% interval; clean = on the "
               "attacked images; worst case per sample in bold")
    reduced = sorted({s for r in rows for s in r.get("reduced", [])})
    if reduced:
        caption += f"; reduced = ensemble below full strength ({', '.join(reduced)})"
    table = Table(title=title or None, caption=caption)
    table.add_column("model")
    adversarial = any(r.get("training") not in (None, "standard") for r in rows)
    if adversarial:
        table.add_column("training")
    defended = any(r.get("defense", "none") != "none" for r in rows)
    if defended:
        table.add_column("defense")
    table.add_column("attack")
    table.add_column("clean", justify="right")
    for e in grid:
        table.add_column(f"eps {format_eps(e)}", justify="right")
    has_min_norm = any(r["eps"] is None for r in rows)
    if has_min_norm:
        table.add_column("median L2", justify="right")
    groups: dict[tuple, dict[float, dict[str, Any]]] = {}
    for r in rows:
        linf = r.get("norm", Norm.LINF) == Norm.LINF
        attack = r["attack"] if linf or r["eps"] is None else f"{r['attack']} [{r['norm']}]"
        groups.setdefault((r["model"], r.get("defense", "none"), attack), {})[r["eps"]] = r
    weakened = {(r["model"], r.get("defense", "none")) for r in rows if r.get("reduced")}
    for (model, defense, attack), cells in groups.items():
        any_row = next(iter(cells.values()))
        shown = attack
        if any(c.get("reduced") for c in cells.values()):
            shown += " (reduced)"
        elif attack == "worst-case" and (model, defense) in weakened:
            shown += " (reduced ensemble)"
        line = [names.get(model, model)] + ([str(any_row.get("training") or "-")] if adversarial else [])
        line += ([defense] if defended else []) + [shown]
        line.append(f"{100 * any_row['clean_accuracy']:.1f}")
        line += [_with_error(cells[e]) if e in cells else "" for e in grid]
        if has_min_norm:
            unbounded = cells.get(None)
            line.append(f"{unbounded['median_l2']:.3g}" if unbounded and "median_l2" in unbounded else "")
        table.add_row(*line, style="bold yellow" if attack == "worst-case" else None)
    out.print(table)




def print_identification(ident: dict[str, dict[str, Any]], names: dict[str, str] | None = None) -> None:
    """Identification metrics per model (paper 002 eq. 3.1-3.3) and confidence under attack."""
    if not ident:
        return
    names = names or {}
    adversarial = next((m.get("adversarial") for m in ident.values() if m.get("adversarial")), None)
    table = Table(
        title="identification on verification pairs (threshold at the validation EER)",
        caption=f"conf adv: mean softmax confidence under {adversarial}" if adversarial else None,
    )
    table.add_column("model")
    for _, heading in IDENTIFICATION_COLUMNS:
        table.add_column(heading, justify="right")
    for key, m in ident.items():
        cells = [f"{100 * m[k]:.1f}" if m.get(k) is not None else "-" for k, _ in IDENTIFICATION_COLUMNS]
        for i, (k, _) in enumerate(IDENTIFICATION_COLUMNS):  # FMR / FNMR: ± the larger side of the 95% CI
            if (iv := (m.get("intervals") or {}).get(k)) and m.get(k) is not None:
                cells[i] += f" ±{100 * max(m[k] - iv['ci_low'], iv['ci_high'] - m[k]):.1f}"
        table.add_row(names.get(key, key), *cells)
    out.print(table)


def print_masking(flags: Sequence[dict[str, Any]]) -> None:
    """Gradient-masking checks: raised flags in red, then one verdict line per model that
    counts only the checks that ran and names those that did not (`masking_verdicts`)."""
    from robustlab.evaluate.masking import masking_verdicts

    def shown(model: str) -> str:  # "<label> [<defense>]": the label's name, the defense kept
        key, sep, rest = model.partition(" [")
        return label_name(key) + (f" [{rest}" if sep else "")

    for f in flags:
        if f["raised"]:
            out.print(f"[bold red]gradient masking?[/bold red] {shown(f['model'])}: {f['check']}: {f['message']}")
    for model, v in masking_verdicts(flags).items():
        style = "bold red" if v["raised"] else ("yellow" if v["not_run"] else "dim")
        out.print(f"[{style}]{shown(model)}: {v['verdict']}[/{style}]")


def print_training_warnings(models: dict[str, Any]) -> dict[str, str]:
    """Print (on stderr) the warning of each model whose training ended far below what its data
    allows, or defended model whose defense did not fit (store meta "models", each entry's
    "warning"); return them by id."""
    found = {m.get("id", k): m["warning"] for k, m in models.items() if m.get("warning")}
    for model_id, warning in found.items():
        err.print(f"[bold yellow]warning:[/bold yellow] {model_id}: {warning}")
    return found


def print_json(obj: Any) -> None:
    """The machine-readable last line of a command run with --json."""
    sys.stdout.write(json.dumps(obj, default=str, separators=(",", ":")) + "\n")
    sys.stdout.flush()
