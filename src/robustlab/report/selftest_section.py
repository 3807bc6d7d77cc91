"""The report's self-test section (order 21, on the first screen after the summary): per model,
the binarization test's pass rate at each eps with its interval, in words; per cell, the
indicators of attack failure."""

from __future__ import annotations

import html
from typing import Any

from robustlab.core.digest import label_name
from robustlab.core.threat import format_eps
from robustlab.report.page import html_table, md_table
from robustlab.report.sections import ReportContext, Section, register_section
from robustlab.selftest.indicators import INDICATORS


@register_section("self-tests", order=21)
def self_tests(ctx: ReportContext) -> Section | None:
    results = ctx.doc.get("selftests") or {}
    cells = [r for r in ctx.doc.get("rows", []) if r.get("indicators")]
    if not results and not cells:
        return None
    html_parts, md_parts = [], []
    if results:
        body, markdown = _binarization(ctx, results)
        html_parts.append(body)
        md_parts.append(markdown)
    if cells:
        body, markdown = _indicators(ctx, cells)
        html_parts.append(body)
        md_parts.append(markdown)
    data = {"binarization": results, "indicators": [
        {k: r[k] for k in ("model", "defense", "attack", "norm", "eps", "indicators")} for r in cells]}
    return Section("self-tests", "Attack self-tests", "".join(html_parts), "\n\n".join(md_parts), data=data)


def _label(ctx: ReportContext, model: str) -> str:
    key, _, rest = model.partition(" [")
    return ctx.names.get(key, label_name(key)) + (f" [{rest}" if rest else "")


def _binarization(ctx: ReportContext, results: dict[str, list[dict[str, Any]]]) -> tuple[str, str]:
    headers = ["model", "eps", "passed", "feasible", "pass rate (95% CI)", "random hits"]
    rows, classes, lines = [], [], []
    for model, tests in results.items():
        label = _label(ctx, model)
        for t in tests:
            rate = "-" if t["feasible"] == 0 else (
                f"{100 * t['rate']:.1f}% ({100 * t['low']:.1f}-{100 * t['high']:.1f})")
            rows.append([label, f"{t['norm']} {format_eps(t['eps'])}", str(t["passed"]), str(t["feasible"]), rate,
                         "-" if t.get("random_rate") is None else f"{100 * t['random_rate']:.1f}%"])
            classes.append("worst" if t["feasible"] and t["rate"] < 0.9 else "")
            lines.append(f"{label}: {t['sentence']}")
    intro = ("Binarization test (Zimmermann et al. 2022): on each sample an adversarial example is planted "
             "inside the eps ball (the model's features with a binary readout); a sound evaluation finds it on "
             "(nearly) every sample. Random points on the eps sphere find it at the 'random hits' rate.")
    body = (f"<p>{html.escape(intro)}</p><ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in lines) + "</ul>"
            + html_table(headers, rows, left=1, row_classes=classes))
    return body, intro + "\n\n" + "\n".join(f"- {x}" for x in lines) + "\n\n" + md_table(headers, rows)


def _indicators(ctx: ReportContext, cells: list[dict[str, Any]]) -> tuple[str, str]:
    names = [n for n in INDICATORS if any(r["indicators"].get(n) is not None for r in cells)]
    headers = ["model", "attack", "eps", "failed", *[n.replace("_", " ") for n in names]]
    rows = []
    for r in cells:
        ind = r["indicators"]
        label = _label(ctx, r["model"] if r.get("defense", "none") == "none" else f"{r['model']} [{r['defense']}]")
        rows.append([label, r["attack"], f"{r['norm']} {format_eps(r['eps'])}", str(ind["failed"]),
                     *["n/a" if ind.get(n) is None else str(ind[n]["raised"]) for n in names]])
    intro = ("Indicators of attack failure (Pintor et al. 2022): per cell, on how many of the samples the attack "
             "left standing each sign of a failed attack was seen (n/a: the attack gives no trace for it).")
    return (f"<p>{html.escape(intro)}</p>" + html_table(headers, rows, left=2),
            intro + "\n\n" + md_table(headers, rows))
