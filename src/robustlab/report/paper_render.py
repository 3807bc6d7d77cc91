"""Paper-style tables of an experiment (see `paper_tables`) as Markdown, plus their two plots:
the transfer matrix as a heat map and the sweep as a curve. Worst case per sample in bold;
accuracies in percent with one decimal, each with its Clopper-Pearson 95% interval
("38.3 (31.6-45.4)"); over seeds "mean ±sd (min-max)"."""

from __future__ import annotations

import html
import io
from dataclasses import dataclass, field
from typing import Any

from robustlab.core.stats import rate_of, spread
from robustlab.core.threat import format_eps


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def pct_ci(r: dict[str, Any] | float | None) -> str:
    """A rate {"value", "ci_low", "ci_high"} as "38.3 (31.6-45.4)" (percent); a bare number as "38.3"."""
    if not isinstance(r, dict):
        return _pct(r)
    if r.get("ci_low") is None:
        return _pct(r.get("value"))
    return f"{_pct(r['value'])} ({_pct(r['ci_low'])}-{_pct(r['ci_high'])})"


def _value(r: dict[str, Any] | float | None) -> float | None:
    return r.get("value") if isinstance(r, dict) else r


def pct_seeds(s: dict[str, Any] | None) -> str:
    """Mean over seeds with its sd and range, and the mean half-width of the per-seed intervals."""
    if s is None:
        return "-"
    ci = "" if s.get("ci_half") is None else f"; CI ±{100 * s['ci_half']:.1f}"
    return f"{_pct(s['mean'])} ±{100 * s['sd']:.1f} ({_pct(s['min'])}-{_pct(s['max'])}{ci})"


def _signed(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:+.1f}"


LEFT = " class='l'"
VERDICT_RULE = (
    "Verdicts are computed (`robustlab.report.verdicts`): a value claim *held* when robustlab's 95% "
    "Clopper-Pearson interval lies inside published ± tolerance, *did not hold* when it lies wholly outside, "
    "else *inconclusive*; a comparison (A > B) *held* when A - B is significant (exact McNemar p < 0.05) in the "
    "claimed direction with its Newcombe interval above the margin, *did not hold* when significant the other "
    "way or the interval lies below the margin, else *inconclusive*. A claim measured at another eps or data "
    "set than the paper's is inconclusive; with several seeds, every seed must agree.")


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
    """Models x (attack, eps) robust accuracy (%), clean accuracy (a defended row: its own, then
    its base's), worst case per eps in bold; every rate with its 95% interval."""
    defended = grid["defense"] != "none"
    headers = ["model", "training", "clean (test split)", *(["base clean"] if defended else []), *grid["columns"],
               *[f"worst @ {e}" for e in grid["eps"]]]
    rows = [[r["model"], r["train"], pct_ci(r["clean"]), *([pct_ci(r.get("clean_base"))] if defended else []),
             *[pct_ci(r["cells"].get(c)) for c in grid["columns"]],
             *[pct_ci(r["worst"].get(e)) for e in grid["eps"]]] for r in grid["rows"]]
    first = 3 + int(defended) + len(grid["columns"])
    return Table(headers, rows, {(i, j) for i in range(len(rows)) for j in range(first, len(headers))})


def seeds_table(block: dict[str, Any]) -> Table:
    """Per model trained with several seeds: mean ±sd (min-max; mean per-seed CI half-width)."""
    headers = ["model", "seeds", "clean", *block["columns"], *[f"worst @ {e}" for e in block["eps"]]]
    rows = [[r["model"], ", ".join(str(s) for s in r["seeds"]), pct_seeds(r["clean"]),
             *[pct_seeds(r["cells"].get(c)) for c in block["columns"]],
             *[pct_seeds(r["worst"].get(e)) for e in block["eps"]]] for r in block["rows"]]
    first = 3 + len(block["columns"])
    return Table(headers, rows, {(i, j) for i in range(len(rows)) for j in range(first, len(headers))})


def paired_table(pairs: list[dict[str, Any]]) -> Table:
    """Exact McNemar comparisons of worst-case accuracy on shared samples: A - B with its Newcombe interval."""
    def name(m: str, d: str) -> str:
        return m if d == "none" else f"{m} + {d}"

    rows = [[p["data"], format_eps(p["eps"]), name(p["first"], p["first_defense"]),
             name(p["second"], p["second_defense"]),
             _pct(p["accuracy_first"]), _pct(p["accuracy_second"]),
             f"{_signed(p['difference'])} ({_signed(p['ci_low'])} to {_signed(p['ci_high'])})",
             f"{p['b']} / {p['c']}", f"{p['p_value']:.3g}"] for p in pairs]
    return Table(["data", "eps", "A", "B", "A %", "B %", "A - B (pts, 95% CI)", "A only / B only", "McNemar p"],
                 rows, {(i, 8) for i, p in enumerate(pairs) if p["p_value"] < 0.05})


def defenses_table(block: dict[str, Any]) -> Table:
    """Defenses x (attack, eps): adaptive robust accuracy % (S / D %, detection AUC), and the
    non-adaptive one (adversarials of the undefended model) after "na"."""
    def cell(v: dict | None) -> str:
        if v is None:
            return "-"
        auc = "" if v.get("detection_auc") is None else f", AUC {v['detection_auc']:.2f}"
        na = "" if v.get("non_adaptive") is None else f"; na {pct_ci(v['non_adaptive'])}"
        return (f"{pct_ci(v['robust_accuracy'])} [S {_pct(v['success_rate'])} / D {pct_ci(v.get('detection'))}"
                f"{auc}]{na}")

    return Table(["defense", "clean (test split)", *block["columns"]],
                 [[r["defense"], pct_ci(r.get("clean")), *[cell(r["cells"].get(c)) for c in block["columns"]]]
                  for r in block["rows"]])


def transfer_table(t: dict[str, Any]) -> Table:
    """Sources (rows) x targets (columns), accuracy %; the diagonal (white-box) underlined."""
    def cell(v: float | None) -> str:
        r = rate_of(v, t.get("n") or 0)
        return pct_ci({**r, "value": v} if r else v)

    rows = [[s, *[cell(t["accuracy"][i][j]) for j in range(len(t["targets"]))]] for i, s in enumerate(t["sources"])]
    diag = {(i, t["targets"].index(s) + 1) for i, s in enumerate(t["sources"]) if s in t["targets"]}
    return Table(["source \\ target", *t["targets"]], rows, underline=diag)


def sweep_table(s: dict[str, Any]) -> Table:
    eps = list(s["points"][0]["worst"]) if s["points"] else []
    seeds = any(p.get("seed") is not None for p in s["points"])
    headers = [*s["keys"], *(["seed"] if seeds else []), "clean", *[f"worst @ {e}" for e in eps]]
    rows = [[*[str(p["values"][k]) for k in s["keys"]], *([str(p.get("seed"))] if seeds else []), pct_ci(p["clean"]),
             *[pct_ci(p["worst"][e]) for e in eps]] for p in s["points"]]
    first = len(s["keys"]) + int(seeds) + 1
    return Table(headers, rows, {(i, j) for i in range(len(rows)) for j in range(first, len(headers))})


def claim_text(c: dict[str, Any]) -> str:
    """What the claim says: "= 20.3 ±5" (a value) or "> softmax" (a comparison)."""
    if c.get("than"):
        margin = f" by {100 * c['margin']:.1f}" if c.get("margin") else ""
        other = c.get("than_defense")
        than = c["than"] + (f" + {other}" if other and other != "none" else " (undefended)" if other else "")
        return f"{'>' if c['direction'] == 'higher' else '<'} {than}{margin}"
    return f"{_pct(c['published'])} ±{100 * c.get('tolerance', 0.05):.0f}"


def measured_text(c: dict[str, Any]) -> str:
    """The measurement: a rate with its interval, a difference with its interval and p, or the
    mean ±sd over seeds."""
    if c.get("seeds"):
        s = c["seeds"]
        mean = _signed(s["mean"]) if c.get("than") else _pct(s["mean"])
        text = f"mean {mean}, sd {100 * s['sd']:.1f} over {s['seeds']} seeds"
        return text + " (" + ", ".join(e.get("verdict", "-") for e in c["per_seed"]) + ")"
    if c.get("measured") is None:
        return "-"
    if c.get("than"):
        p = f", p {c['p_value']:.3g}" if c.get("p_value") is not None else ""
        return f"{_signed(c['measured'])} ({_signed(c['ci_low'])} to {_signed(c['ci_high'])}{p})"
    return pct_ci({"value": c["measured"], "ci_low": c.get("ci_low"), "ci_high": c.get("ci_high")})


def claims_table(claims: list[dict[str, Any]]) -> Table:
    """Each claim, what it states, robustlab's measurement with its interval, the computed
    verdict (and why, when inconclusive for its setting), and the data set measured on (flagged
    when not the paper's)."""
    def where(c: dict[str, Any]) -> str:
        cell = f"{c['attack']} @ {format_eps(c['eps'])}" if c["eps"] is not None else c["attack"]
        paper = f" (paper: eps {format_eps(c['paper_eps'])})" if c.get("paper_eps") not in (None, c["eps"]) else ""
        return cell + paper + (f" from {c['source']}" if c["source"] else "")

    def data(c: dict[str, Any]) -> str:
        measured = c.get("data") or "-"
        paper = c.get("paper_data")
        return f"{measured} (paper: {paper}, not comparable)" if paper and paper.lower() != measured.lower() \
            else measured

    def verdict(c: dict[str, Any]) -> str:
        v = c.get("verdict", "-")
        return f"{v}: {'; '.join(c['why'])}" if c.get("why") else v

    rows = [[c["ref"], c["model"], c["defense"], where(c), data(c), c["metric"], claim_text(c), measured_text(c),
             "-" if c["delta"] is None else f"{100 * c['delta']:+.1f}", verdict(c)] for c in claims]
    return Table(["claim", "model", "defense", "cell", "data", "metric", "claimed %", "robustlab % (95% CI)",
                  "delta (pts)", "verdict"], rows, {(i, 9) for i in range(len(rows))})


def claims_notes(tables: dict[str, Any]) -> str:
    """The scale of the run and every deviation listed beside the claims (Markdown)."""
    lines = []
    for s in tables.get("scale") or []:
        lines.append(f"- scale ({s['data']}): {s['name']}"
                     + (f", {s['train_per_class']} training images per class" if s.get("train_per_class") else "")
                     + f", {s.get('n_eval') or '?'} attacked of {s.get('n_test') or '?'} test images"
                     + f", backbone {', '.join(s['backbones']) or '?'}"
                     + f", epochs {', '.join(map(str, s['epochs'])) or '?'}"
                     + f", {s['seeds']} seed{'s' if s['seeds'] != 1 else ''}")
    lists = [c.get("deviations") or [] for c in tables["claims"]]
    common = [d for d in lists[0] if all(d in other for other in lists[1:])] if lists else []
    if common:
        lines.append("- deviations from the paper's setting (every claim): " + "; ".join(common))
    for c, devs in zip(tables["claims"], lists, strict=True):
        own = [d for d in devs if d not in common]
        if own:
            lines.append(f"- {c['ref'] or c['model']}: " + "; ".join(own))
    return "\n".join(lines)


def cells_table(cells: list[dict[str, Any]]) -> Table:
    """Per-cell metrics: confidence under attack, MSE, SSIM, detection AUC, K-A3 check."""
    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    rows = []
    for c in cells:
        ka3 = c.get("ka3_check")
        rows.append([c["model"], c["defense"], c["attack"], "min-norm" if c["eps"] is None else f"{c['eps']:g}",
                     pct_ci({**((c.get("intervals") or {}).get("robust_accuracy") or {}),
                             "value": c.get("robust_accuracy")}),
                     f(c.get("mean_confidence"), ".3f"),
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
    """PNG curve: swept value (x) against clean and worst-case accuracy per eps (%); with several
    seeds, the mean over seeds at each value and its range as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = s["keys"][0]
    by_x: dict[Any, list[dict[str, Any]]] = {}
    for p in sorted(s["points"], key=lambda p: p["values"][key]):
        by_x.setdefault(p["values"][key], []).append(p)
    xs = list(by_x)

    def curve(get) -> tuple[list[float], list[list[float]]]:
        means: list[float] = []
        bars: list[list[float]] = [[], []]
        for group in by_x.values():
            sp = spread([_value(get(p)) for p in group])
            means.append(float("nan") if sp is None else 100 * sp["mean"])
            bars[0].append(0.0 if sp is None else 100 * (sp["mean"] - sp["min"]))
            bars[1].append(0.0 if sp is None else 100 * (sp["max"] - sp["mean"]))
        return means, bars

    with plt.style.context("dark_background" if style == "dark" else "default"):
        fig, ax = plt.subplots(figsize=(4.5, 3.0))
        ys, err = curve(lambda p: p["clean"])
        ax.errorbar(xs, ys, yerr=err, marker="o", label="clean", capsize=2)
        for e in (list(s["points"][0]["worst"]) if s["points"] else []):
            ys, err = curve(lambda p, e=e: p["worst"][e])
            ax.errorbar(xs, ys, yerr=err, marker="s", label=f"worst case eps={e}", capsize=2)
        ax.set_xlabel(key)
        ax.set_ylabel("accuracy %")
        ax.set_ylim(0, 100)
        ax.set_title(s["family"], fontsize=9)
        ax.legend(fontsize=7)
        return _png(fig)


def tables_markdown(tables: dict[str, Any], figures: dict[str, str] | None = None, *, level: int = 2,
                    cells: bool = True) -> str:
    """Every section as one Markdown document; `figures` maps a figure id to its file name;
    `level`: the headings' depth; `cells`: include the per-cell metrics table (without it, as in
    the README, the paired comparisons are those at the claims' eps values only)."""
    figures = figures or {}
    h = "#" * level
    out = []
    if tables["claims"]:
        out += [f"{h} Claims", "", VERDICT_RULE, "", claims_table(tables["claims"]).markdown(), "",
                claims_notes(tables), ""]
    for g in tables["grid"]:
        out += [f"{h} Robust accuracy (%, 95% CI): {g['data']}, defense {g['defense']}", "",
                grid_table(g).markdown(), ""]
    for b in tables.get("seeds") or []:
        out += [f"{h} Over seeds (%): {b['data']}, defense {b['defense']}", "", seeds_table(b).markdown(), ""]
    claimed = {c["eps"] for c in tables["claims"]}
    paired = [p for p in tables.get("paired") or [] if cells or p["eps"] in claimed]
    if paired:
        where = "" if cells else " at the claims' eps (every eps in tables.md)"
        out += [f"{h} Paired comparisons (worst case per sample, exact McNemar){where}", "",
                paired_table(paired).markdown(), ""]
    for d in tables["defenses"]:
        out += [f"{h} Defenses x attacks: {d['model']}", "", defenses_table(d).markdown(), ""]
    for i, t in enumerate(tables["transfer"]):
        out += [f"{h} Transfer matrix: {t['attack']} eps={t['eps']:g} (accuracy %, rows = source)", "",
                transfer_table(t).markdown(), ""]
        if f"transfer-{i}" in figures:
            out += [f"![transfer matrix]({figures[f'transfer-{i}']})", ""]
    for i, s in enumerate(tables["sweep"]):
        out += [f"{h} Sweep: {s['family']}", "", sweep_table(s).markdown(), ""]
        if f"sweep-{i}" in figures:
            out += [f"![sweep]({figures[f'sweep-{i}']})", ""]
    if cells and tables["cells"]:
        out += [f"{h} Per-cell metrics", "", cells_table(tables["cells"]).markdown(), ""]
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
