"""The report's self-test section (order 21, on the first screen after the summary): per model,
the binarization test's pass rate at each eps with its interval, in words."""

from __future__ import annotations

import html

from robustlab.core.threat import format_eps
from robustlab.report.page import html_table, md_table
from robustlab.report.sections import ReportContext, Section, register_section


@register_section("self-tests", order=21)
def self_tests(ctx: ReportContext) -> Section | None:
    results = ctx.doc.get("selftests") or {}
    if not results:
        return None
    headers = ["model", "eps", "passed", "feasible", "pass rate (95% CI)", "random hits"]
    rows, classes, lines = [], [], []
    for model, tests in results.items():
        key, _, rest = model.partition(" [")
        label = ctx.names.get(key, key.split(":")[0]) + (f" [{rest}" if rest else "")
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
    markdown = intro + "\n\n" + "\n".join(f"- {x}" for x in lines) + "\n\n" + md_table(headers, rows)
    return Section("self-tests", "Attack self-tests", body, markdown, data=results)
