"""The HTML page around the sections: light/dark CSS, no external assets, and table helpers
shared by the HTML and Markdown renderings."""

from __future__ import annotations

import html
from collections.abc import Sequence

from robustlab.report.sections import Section

CSS = """
:root{color-scheme:light dark;--fg:#1d1f23;--bg:#ffffff;--muted:#5b6270;--line:#d9dde3;--head:#f2f4f7;
--bar:rgba(43,108,176,.16);--warn:#9a6700;--warnbg:#fff4d6;--bad:#b42318;--badbg:#fde8e6;--ok:#157f3b;--okbg:#e5f5ea}
@media (prefers-color-scheme:dark){:root{--fg:#e6e8eb;--bg:#1b1e23;--muted:#9aa3ae;--line:#343a42;--head:#23272e;
--bar:rgba(120,170,235,.22);--warn:#f0c24b;--warnbg:#3a2f12;--bad:#ff8a80;--badbg:#3d1f1c;--ok:#6fd08c;--okbg:#173222}}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;background:var(--bg);color:var(--fg);
max-width:1280px;margin:1.5em auto;padding:0 1.2em}
h1{font-size:1.45em;margin:.2em 0}
h2{font-size:1.15em;margin:1.6em 0 .5em;border-bottom:1px solid var(--line);padding-bottom:.2em}
.meta{color:var(--muted);font-size:13px;margin:.2em 0}
table{border-collapse:collapse;font-size:13px;margin:.5em 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid var(--line);padding:4px 8px;text-align:right;vertical-align:top}
th{background:var(--head);font-weight:600}td.l,th.l{text-align:left}
tr.worst td{font-weight:600}
td.acc{background:linear-gradient(90deg,var(--bar) calc(var(--v)*100%),transparent 0)}
td.acc small{display:block;color:var(--muted);font-weight:400;font-size:11px}
.tag{display:inline-block;font-size:10px;padding:0 5px;border-radius:8px;margin-left:4px;font-weight:600;
background:var(--warnbg);color:var(--warn)}
.top{display:grid;grid-template-columns:minmax(0,1fr) minmax(300px,400px);gap:1.2em;align-items:start}
.top>div{min-width:0;overflow-x:auto}td.l:first-child{white-space:nowrap}td.acc{min-width:74px}
@media (max-width:1000px){.top{grid-template-columns:1fr}}
img{max-width:100%;height:auto;border-radius:6px;border:1px solid var(--line)}
.figs{display:flex;flex-wrap:wrap;gap:10px}.figs picture{flex:1 1 420px;max-width:560px}
details{margin:.4em 0;border:1px solid var(--line);border-radius:6px;padding:.3em .7em}
summary{cursor:pointer;font-weight:600}
.verdict{padding:.6em .9em;border-radius:6px;margin:.5em 0;font-weight:600}
.verdict.ok{background:var(--okbg);color:var(--ok)}.verdict.bad{background:var(--badbg);color:var(--bad)}
.verdict.warn{background:var(--warnbg);color:var(--warn)}
.note{color:var(--muted);font-size:12.5px;max-width:80em}
"""


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, left: int = 1,
               row_classes: Sequence[str] | None = None, raw: bool = False) -> str:
    """An HTML table; the first `left` columns are left-aligned. Cells are escaped unless `raw`."""
    def cell(tag: str, i: int, text: str) -> str:
        cls = " class='l'" if i < left else ""
        return f"<{tag}{cls}>{text if raw else html.escape(text)}</{tag}>"

    head = "".join(cell("th", i, html.escape(h) if raw else h) for i, h in enumerate(headers))
    body = []
    for k, r in enumerate(rows):
        cls = f" class='{row_classes[k]}'" if row_classes and row_classes[k] else ""
        body.append(f"<tr{cls}>" + "".join(cell("td", i, c) for i, c in enumerate(r)) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table (pipes in cells escaped)."""
    def esc(t: str) -> str:
        return t.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def render_page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole self-contained page."""
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<meta name='color-scheme' content='light dark'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
        f"<p class='meta'>{subtitle}</p>" if subtitle else "",
    ]
    for s in sections:
        body = s.html
        if s.collapsed:
            parts.append(f"<section id='{html.escape(s.id)}'><h2>{html.escape(s.title)}</h2>"
                         f"<details><summary>show</summary>{body}</details></section>")
        else:
            parts.append(f"<section id='{html.escape(s.id)}'><h2>{html.escape(s.title)}</h2>{body}</section>")
    parts.append("</body></html>")
    return "".join(parts)
