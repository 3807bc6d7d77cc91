"""Paper-style tables of an experiment (see `paper_tables`) as Markdown, plus their two plots:
the transfer matrix as a heat map and the sweep as a curve. Worst case per sample in bold;
accuracies in percent with one decimal."""

from __future__ import annotations

import html
import io
from dataclasses import dataclass, field
from typing import Any


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


LEFT = " class='l'"


@dataclass
class Table:
    """Headers, rows of cell strings, and the (row, column) cells shown in bold / underlined."""

    headers: list[str]
    rows: list[list[str]]
    bold: set[tuple[int, int]] = field(default_factory=set)
    underline: set[tuple[int, int]] = field(default_factory=set)

    def markdown(self) -> str:
        def esc(t: str) -> str:
            return t.replace("|", "\\|")

        def cell(i: int, j: int, t: str) -> str:
            t = esc(t)
            t = f"<u>{t}</u>" if (i, j) in self.underline else t
            return f"**{t}**" if (i, j) in self.bold else t

        lines = ["| " + " | ".join(esc(h) for h in self.headers) + " |", "|" + "---|" * len(self.headers)]
        lines += ["| " + " | ".join(cell(i, j, t) for j, t in enumerate(r)) + " |" for i, r in enumerate(self.rows)]
        return "\n".join(lines)

    def html(self) -> str:
        def cell(i: int, j: int, t: str) -> str:
            t = html.escape(t)
            t = f"<u>{t}</u>" if (i, j) in self.underline else t
            t = f"<b>{t}</b>" if (i, j) in self.bold else t
            return f"<td{LEFT if j == 0 else ''}>{t}</td>"

        head = "".join(f"<th{LEFT if j == 0 else ''}>{html.escape(h)}</th>" for j, h in enumerate(self.headers))
        body = "".join("<tr>" + "".join(cell(i, j, t) for j, t in enumerate(r)) + "</tr>"
                       for i, r in enumerate(self.rows))
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def grid_table(grid: dict[str, Any]) -> Table:
    """Models x (attack, eps) robust accuracy (%), clean accuracy, worst case per eps in bold."""
    headers = ["model", "training", "clean", *grid["columns"], *[f"worst @ {e}" for e in grid["eps"]]]
    rows = [[r["model"], r["train"], _pct(r["clean"]), *[_pct(r["cells"].get(c)) for c in grid["columns"]],
             *[_pct(r["worst"].get(e)) for e in grid["eps"]]] for r in grid["rows"]]
    first = 3 + len(grid["columns"])
    return Table(headers, rows, {(i, j) for i in range(len(rows)) for j in range(first, len(headers))})


def defenses_table(block: dict[str, Any]) -> Table:
    """Defenses x (attack, eps): adaptive robust accuracy % (S / D %, detection AUC), and the
    non-adaptive one (adversarials of the undefended model) after "na"."""
    def cell(v: dict | None) -> str:
        if v is None:
            return "-"
        auc = "" if v.get("detection_auc") is None else f", AUC {v['detection_auc']:.2f}"
        na = "" if v.get("non_adaptive") is None else f"; na {_pct(v['non_adaptive'])}"
        return (f"{_pct(v['robust_accuracy'])} (S {_pct(v['success_rate'])} / D {_pct(v['detection_rate'])}"
                f"{auc}){na}")

    return Table(["defense", *block["columns"]],
                 [[r["defense"], *[cell(r["cells"].get(c)) for c in block["columns"]]] for r in block["rows"]])


def transfer_table(t: dict[str, Any]) -> Table:
    """Sources (rows) x targets (columns), accuracy %; the diagonal (white-box) underlined."""
    rows = [[s, *[_pct(t["accuracy"][i][j]) for j in range(len(t["targets"]))]] for i, s in enumerate(t["sources"])]
    diag = {(i, t["targets"].index(s) + 1) for i, s in enumerate(t["sources"]) if s in t["targets"]}
    return Table(["source \\ target", *t["targets"]], rows, underline=diag)


def sweep_table(s: dict[str, Any]) -> Table:
    eps = list(s["points"][0]["worst"]) if s["points"] else []
    headers = [*s["keys"], "clean", *[f"worst @ {e}" for e in eps]]
    rows = [[*[str(p["values"][k]) for k in s["keys"]], _pct(p["clean"]), *[_pct(p["worst"][e]) for e in eps]]
            for p in s["points"]]
    first = len(s["keys"]) + 1
    return Table(headers, rows, {(i, j) for i in range(len(rows)) for j in range(first, len(headers))})


def claims_table(claims: list[dict[str, Any]]) -> Table:
    def where(c: dict[str, Any]) -> str:
        cell = f"{c['attack']} @ {c['eps']:g}" if c["eps"] is not None else c["attack"]
        return cell + (f" from {c['source']}" if c["source"] else "")

    rows = [[c["ref"], c["model"], c["defense"], where(c), c["metric"], _pct(c["published"]), _pct(c["measured"]),
             "-" if c["delta"] is None else f"{100 * c['delta']:+.1f}"] for c in claims]
    return Table(["claim", "model", "defense", "cell", "metric", "published %", "robustlab %", "delta (pts)"], rows)


def cells_table(cells: list[dict[str, Any]]) -> Table:
    """Per-cell metrics: confidence under attack, MSE, SSIM, detection AUC, K-A3 check."""
    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    rows = []
    for c in cells:
        ka3 = c.get("ka3_check")
        rows.append([c["model"], c["defense"], c["attack"], "min-norm" if c["eps"] is None else f"{c['eps']:g}",
                     _pct(c.get("robust_accuracy")), f(c.get("mean_confidence"), ".3f"),
                     f(c.get("mean_mse"), ".2e"), f(c.get("mean_ssim", c.get("mean_ms_ssim")), ".3f"),
                     f(c.get("detection_auc"), ".3f"),
                     "-" if not ka3 else ("PASS" if ka3["passed"] else "FAIL") + f" (max p {ka3['max_p']:.2f})"])
    return Table(["model", "defense", "attack", "eps", "robust %", "confidence", "MSE", "SSIM",
                  "detection AUC", "K-A3"], rows)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def transfer_heatmap(t: dict[str, Any], style: str = "light") -> bytes:
    """PNG heat map of a transfer matrix (accuracy %, sources as rows, diagonal = white-box)."""
    from robustlab.report.plots import heatmap_plot

    return heatmap_plot(t["accuracy"], t["sources"], t["targets"],
                        f"transfer {t['attack']} eps={t['eps']:g} (accuracy %)", style=style,
                        xlabel="target", ylabel="source")


def sweep_curve(s: dict[str, Any], style: str = "light") -> bytes:
    """PNG curve: swept value (x) against clean and worst-case accuracy per eps (%)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = s["keys"][0]
    pts = sorted(s["points"], key=lambda p: p["values"][key])
    xs = [p["values"][key] for p in pts]
    with plt.style.context("dark_background" if style == "dark" else "default"):
        fig, ax = plt.subplots(figsize=(4.5, 3.0))
        ax.plot(xs, [100 * (p["clean"] or 0) for p in pts], marker="o", label="clean")
        for e in (list(pts[0]["worst"]) if pts else []):
            ax.plot(xs, [100 * v if (v := p["worst"][e]) is not None else float("nan") for p in pts],
                    marker="s", label=f"worst case eps={e}")
        ax.set_xlabel(key)
        ax.set_ylabel("accuracy %")
        ax.set_ylim(0, 100)
        ax.set_title(s["family"], fontsize=9)
        ax.legend(fontsize=7)
        return _png(fig)


def tables_markdown(tables: dict[str, Any], figures: dict[str, str] | None = None) -> str:
    """Every section as one Markdown document; `figures` maps a figure id to its file name."""
    figures = figures or {}
    out = []
    if tables["claims"]:
        out += ["## Claims", "", claims_table(tables["claims"]).markdown(), ""]
    for g in tables["grid"]:
        out += [f"## Robust accuracy (%): {g['data']}, defense {g['defense']}", "", grid_table(g).markdown(), ""]
    for d in tables["defenses"]:
        out += [f"## Defenses x attacks: {d['model']}", "", defenses_table(d).markdown(), ""]
    for i, t in enumerate(tables["transfer"]):
        out += [f"## Transfer matrix: {t['attack']} eps={t['eps']:g} (accuracy %, rows = source)", "",
                transfer_table(t).markdown(), ""]
        if f"transfer-{i}" in figures:
            out += [f"![transfer matrix]({figures[f'transfer-{i}']})", ""]
    for i, s in enumerate(tables["sweep"]):
        out += [f"## Sweep: {s['family']}", "", sweep_table(s).markdown(), ""]
        if f"sweep-{i}" in figures:
            out += [f"![sweep]({figures[f'sweep-{i}']})", ""]
    if tables["cells"]:
        out += ["## Per-cell metrics", "", cells_table(tables["cells"]).markdown(), ""]
    return "\n".join(out)


def write_paper_tables(run_dir) -> dict[str, Any] | None:
    """Write ``tables.md``, ``tables.json`` and the plots (``tables-*.png``) of the experiment
    in `run_dir`; returns {"markdown": path, "json": path, "figures": [...]}, or None when
    the run has no experiment index."""
    import json
    from pathlib import Path

    from robustlab.core.files import publish
    from robustlab.report.paper_tables import paper_tables
    from robustlab.store.results import ResultStore

    run_dir = Path(run_dir)
    with ResultStore(run_dir, readonly=True) as store:
        tables = paper_tables(store)
    if tables is None:
        return None
    figures: dict[str, str] = {}
    files: dict[Path, bytes] = {}
    for i, t in enumerate(tables["transfer"]):
        figures[f"transfer-{i}"] = f"tables-transfer-{i}.png"
        files[run_dir / figures[f"transfer-{i}"]] = transfer_heatmap(t)
    for i, s in enumerate(tables["sweep"]):
        figures[f"sweep-{i}"] = f"tables-sweep-{i}.png"
        files[run_dir / figures[f"sweep-{i}"]] = sweep_curve(s)
    md, js = run_dir / "tables.md", run_dir / "tables.json"
    files[md] = tables_markdown(tables, figures).encode()
    files[js] = json.dumps(tables, indent=1, allow_nan=False).encode()
    publish(files)  # all together and atomically, like the report
    return {"markdown": md, "json": js, "figures": [run_dir / f for f in figures.values()]}
