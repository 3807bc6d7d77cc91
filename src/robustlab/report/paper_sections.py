"""The experiment's paper-style sections of the report (one table per question), registered
with the report's section registry: claims with their computed verdicts, the run's scale and
deviations, models x (attack, eps) with the worst case per sample in bold, the spread over
seeds, paired comparisons (exact McNemar), defenses x attacks (adaptive and non-adaptive),
the transfer matrix as a heat map, the sweep as a curve. Every rate carries its 95% interval.
Runs without an experiment index (a plain `evaluate`) get none of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from robustlab.evaluate.summary import paired_comparisons
from robustlab.report.paper_render import (
    VERDICT_RULE,
    claims_notes,
    claims_table,
    defenses_table,
    grid_table,
    paired_table,
    seeds_table,
    sweep_curve,
    sweep_table,
    transfer_heatmap,
    transfer_table,
)
from robustlab.report.paper_tables import paper_tables
from robustlab.report.sections import ReportContext, Section, register_section
from robustlab.store.results import ResultStore


def _tables(ctx: ReportContext) -> dict[str, Any] | None:
    """The experiment's tables, computed once per report (kept in the document)."""
    if "paper_tables" not in ctx.doc:
        with ResultStore(ctx.doc["run_dir"], readonly=True) as store:
            ctx.doc["paper_tables"] = paper_tables(store)
    return ctx.doc["paper_tables"]


def _join(parts: list[tuple[str, str]]) -> tuple[str, str]:
    return "".join(h for h, _ in parts), "\n\n".join(m for _, m in parts)


@register_section("claims", order=22)
def claims(ctx: ReportContext) -> Section | None:
    t = _tables(ctx)
    if not t or not t["claims"]:
        return None
    import html as _html

    table = claims_table(t["claims"])
    notes = claims_notes(t)
    rule = (VERDICT_RULE + " Delta in percentage points; a worst-case cell is the worst case per sample "
            "over every attack run.")
    body = (f"<p>{_html.escape(rule)}</p>{table.html()}<ul>"
            + "".join(f"<li>{_html.escape(line[2:])}</li>" for line in notes.splitlines()) + "</ul>")
    return Section("claims", "Claims: computed verdicts", body, f"{rule}\n\n{table.markdown()}\n\n{notes}",
                   data={"claims": t["claims"], "scale": t["scale"], "deviations": t["deviations"]})


def _per_data_and_defense(blocks: list[dict[str, Any]], render: Callable[[dict[str, Any]], Any]) -> tuple[str, str]:
    """HTML and Markdown of one rendered table per block, each under a "<data>, defense <d>" heading."""
    parts = []
    for b in blocks:
        table = render(b)
        title = f"{b['data']}, defense {b['defense']}"
        parts.append((f"<h3>{title}</h3>{table.html()}", f"### {title}\n\n{table.markdown()}"))
    return _join(parts)


@register_section("paper-seeds", order=27)
def seeds(ctx: ReportContext) -> Section | None:
    t = _tables(ctx)
    if not t or not t.get("seeds"):
        return None
    html, md = _per_data_and_defense(t["seeds"], seeds_table)
    return Section("paper-seeds", "Over training seeds: mean ±sd (min-max; mean per-seed 95% CI half-width)",
                   html, md, data=t["seeds"])


@register_section("paper-paired", order=29)
def paired(ctx: ReportContext) -> Section | None:
    """The experiment's paired comparisons; a run without an index (`evaluate`): every two models
    (or defenses) evaluated on the same samples."""
    t = _tables(ctx)
    if t:
        pairs = t.get("paired") or []
    else:
        with ResultStore(ctx.doc["run_dir"], readonly=True) as store:
            pairs = paired_comparisons(store)
        pairs = [{**p, "first": ctx.names.get(p["first"], p["first"]),
                  "second": ctx.names.get(p["second"], p["second"])} for p in pairs]
    if not pairs:
        return None
    table = paired_table(pairs)
    note = ("Worst case per sample of two models on the same samples: A - B with its Newcombe (hybrid score) 95% "
            "interval and the exact McNemar p-value (p < 0.05 in bold).")
    return Section("paired", "Paired comparisons", f"<p>{note}</p>{table.html()}", f"{note}\n\n{table.markdown()}",
                   data=pairs)


@register_section("paper-grid", order=27)
def grid(ctx: ReportContext) -> Section | None:
    t = _tables(ctx)
    if not t or not t["grid"]:
        return None
    html, md = _per_data_and_defense(t["grid"], grid_table)
    return Section("paper-grid", "Robust accuracy (%, 95% CI) per attack and eps, worst case per sample in bold",
                   html, md, data=t["grid"])


@register_section("paper-defenses", order=28)
def defenses(ctx: ReportContext) -> Section | None:
    t = _tables(ctx)
    if not t or not t["defenses"]:
        return None
    parts = []
    for d in t["defenses"]:
        table = defenses_table(d)
        parts.append((f"<h3>{d['model']}</h3>{table.html()}", f"### {d['model']}\n\n{table.markdown()}"))
    html, md = _join(parts)
    note = ("<p>Robust accuracy % under adaptive white-box attacks (S = success, D = detected, % of the "
            "initially correct; detection ROC-AUC for detectors); <i>na</i>: non-adaptive, the adversarials "
            "of the undefended model shown to the defended one.</p>")
    return Section("paper-defenses", "Defenses x attacks", note + html, md, data=t["defenses"])


@register_section("paper-transfer", order=91)
def transfer(ctx: ReportContext) -> Section | None:
    t = _tables(ctx)
    if not t or not t["transfer"]:
        return None
    parts = []
    for i, m in enumerate(t["transfer"]):
        table = transfer_table(m)
        fig = ctx.figure(f"paper-transfer-{i}", lambda style, m=m: transfer_heatmap(m, style),
                         f"transfer matrix {m['attack']} eps {m['eps']:g}")
        title = f"{m['attack']} eps={m['eps']:g}"
        parts.append((f"<h3>{title}</h3>{fig.html}{table.html()}",
                      f"### {title}\n\n{fig.markdown}\n\n{table.markdown()}"))
    html, md = _join(parts)
    return Section("paper-transfer", "Transfer matrix (accuracy %, rows = source; diagonal = white-box)",
                   html, md, data=t["transfer"])


@register_section("paper-sweep", order=92)
def sweep(ctx: ReportContext) -> Section | None:
    t = _tables(ctx)
    if not t or not t["sweep"]:
        return None
    parts = []
    for i, s in enumerate(t["sweep"]):
        table = sweep_table(s)
        fig = ctx.figure(f"paper-sweep-{i}", lambda style, s=s: sweep_curve(s, style), f"sweep {s['family']}")
        parts.append((f"<h3>{s['family']}</h3>{fig.html}{table.html()}",
                      f"### {s['family']}\n\n{fig.markdown}\n\n{table.markdown()}"))
    html, md = _join(parts)
    return Section("paper-sweep", "Sweep", html, md, data=t["sweep"])
