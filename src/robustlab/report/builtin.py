"""The built-in report sections, one function each (see `robustlab.report.sections`).

Order: 20 summary (headline table + curves), 25 models, 30 per-attack details, 40
identification, 50 gradient-masking checks, 60 per-cell metrics, 70 distance curves,
80 rank pmf, 90 transferability, 100 how to read the numbers.
"""

from __future__ import annotations

import html
from collections import defaultdict
from typing import Any

from robustlab.core.stats import rate_of
from robustlab.core.threat import format_eps
from robustlab.evaluate.defended import less_robust_text
from robustlab.evaluate.masking import masking_verdicts
from robustlab.report.headline import shows_identification
from robustlab.report.page import html_table, md_table
from robustlab.report.plots import comparison_plot, robust_accuracy_plot, style_context
from robustlab.report.rank_plot import rank_pmf_plot
from robustlab.report.sections import ReportContext, Section, register_section
from robustlab.report.tables import COLUMNS, IDENTIFICATION_COLUMNS, format_value, table_cells

CELL_METRICS: tuple[tuple[str, str], ...] = (
    ("mean_confidence", "confidence"),
    ("mean_mse", "MSE"),
    ("mean_ssim", "SSIM"),
    ("mean_ms_ssim", "MS-SSIM"),
    ("detection_auc", "detection AUC"),
)
"""Per-cell metrics a row may carry (key in the summarize row, heading); shown when present."""


def pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def pct_ci(v: float | None, low: float | None, high: float | None) -> str:
    """A rate with its 95% interval: "38.3% (31.6-45.4)"."""
    return pct(v) if low is None or high is None or v is None else f"{pct(v)} ({100 * low:.1f}-{100 * high:.1f})"


def _defended(rows: list[dict[str, Any]]) -> bool:
    return any(r.get("defense", "none") != "none" for r in rows)


def _strongest_text(cell: dict[str, Any]) -> str:
    """The strongest attack's name; "all" when every attack tied, "a, b" for two, "a +N" for more."""
    names = list(dict.fromkeys(a.split("(")[0] for a in cell["strongest"]))
    if cell["attacks"] > 1 and len(cell["strongest"]) == cell["attacks"]:
        return "all tied"
    return ", ".join(names) if len(names) <= 2 else f"{names[0]} +{len(names) - 1}"


def _model_order(ctx: ReportContext, key: str) -> int:
    keys = list(ctx.doc["models"])
    return keys.index(key) if key in keys else len(keys)


@register_section("summary", order=20)
def summary(ctx: ReportContext) -> Section | None:
    head = ctx.doc["headline"]
    if not head:
        return None
    grid = sorted({c["eps"] for h in head for c in h["cells"]})
    zero = [(c["robust_accuracy"], h["clean_accuracy"]) for h in head for c in h["cells"] if c["eps"] == 0]
    if zero and all(a == b for a, b in zero):
        grid.remove(0)  # eps 0 repeats the clean column
    defended = any(h["defense"] != "none" for h in head)
    sizes = sorted({h["n"] for h in head if h.get("n")})
    clean_head = "clean (attacked" + (f", n={sizes[0]})" if len(sizes) == 1 else ")")
    headers = ["model", *(["defense"] if defended else []), "training", clean_head,
               *[f"eps {format_eps(e)}" + (" (attacked)" if e == 0 else "") for e in grid]]
    bases = {(d["model"], d["defense"]): d for d in ctx.doc.get("defended", [])}
    clean_of = {h["model"]: h["clean_accuracy"] for h in head if h["defense"] == "none"}
    html_rows, md_rows = [], []
    reduced: set[str] = set()
    no_ensemble = False
    for h in head:
        name = ctx.names.get(h["model"], h["model"])
        stat = rate_of(h["clean_accuracy"], h.get("n") or 0) or {}
        clean = pct_ci(h["clean_accuracy"], stat.get("ci_low"), stat.get("ci_high"))
        link = bases.get((h["model"], h["defense"]))
        if link is not None:  # the defended model's own clean accuracy beside its base's
            base_clean = clean_of.get(link["base"]) if link["base"] else None
            clean += (f" (base {pct(base_clean)})" if base_clean is not None
                      else f" (base {pct(link['base_clean_accuracy'])} on the test set)"
                      if link.get("base_clean_accuracy") is not None else "")
        recipe = f"defended from {link['base_name']}" if link is not None else h["recipe"]
        lead = [html.escape(name), *([html.escape(h["defense"])] if defended else []), html.escape(recipe),
                html.escape(clean)]
        md_lead = [name, *([h["defense"]] if defended else []), recipe, clean]
        cells = {c["eps"]: c for c in h["cells"]}
        hc, mc = [], []
        for e in grid:
            c = cells.get(e)
            if c is None:
                hc.append("<td></td>")
                mc.append("")
                continue
            strongest = _strongest_text(c) if e > 0 else ""
            is_reduced = c["ensemble"] == "reduced" and e > 0
            reduced |= set(c["reduced"]) if e > 0 else set()
            no_ensemble |= c["ensemble"] == "none" and e > 0
            v = c["robust_accuracy"]
            tag = "<span class='tag'>reduced</span>" if is_reduced else ""
            title = html.escape("; ".join(c["strongest"]), quote=True)
            ci = "" if c.get("ci_low") is None else f"<small>{100 * c['ci_low']:.1f}-{100 * c['ci_high']:.1f}</small>"
            hc.append(f"<td class='acc' style='--v:{v:.3f}' title='{title}'>{pct(v)}{ci}"
                      f"{f'<small>{html.escape(strongest)}{tag}</small>' if strongest or tag else ''}</td>")
            mc.append(pct_ci(v, c.get("ci_low"), c.get("ci_high"))
                      + (f" ({strongest}{', reduced' if is_reduced else ''})" if strongest else ""))
        html_rows.append("<tr>" + "".join(f"<td class='l'>{c}</td>" for c in lead[:-1])
                         + f"<td>{lead[-1]}</td>" + "".join(hc) + "</tr>")
        md_rows.append(md_lead + mc)
    nleft = 2 + int(defended)
    thead = "".join(f"<th class='l'>{html.escape(h)}</th>" if i < nleft else f"<th>{html.escape(h)}</th>"
                    for i, h in enumerate(headers))
    table = f"<table><thead><tr>{thead}</tr></thead><tbody>{''.join(html_rows)}</tbody></table>"
    notes = ["Worst-case robust accuracy per sample over every attack run at each eps, with its exact "
             "(Clopper-Pearson) 95% interval over the attacked samples; under it, the attack that was strongest "
             "there. 'clean (attacked)': accuracy on the attacked test images; the models table gives it on the "
             "whole test set."]
    if reduced:
        notes.append("'reduced': the AutoAttack-style ensemble ran below full strength ("
                     + "; ".join(sorted(reduced)) + "), so these numbers are upper bounds of what the "
                     "full ensemble would leave.")
    if no_ensemble:
        notes.append("Cells without the ensemble (autoattack) are upper bounds, only as strong as the attacks listed.")
    curves = {}
    for h in head:
        curves[ctx.name(h["model"], h["defense"])] = [(c["eps"], c["robust_accuracy"]) for c in h["cells"]]
    fig = ctx.figure("summary", lambda style: comparison_plot(curves, style=style), "worst-case robust accuracy vs eps")
    note = " ".join(notes)
    threat = ctx.doc.get("threat_model") or {}
    lead_html = f"<p class='meta'>{html.escape(threat.get('text', ''))}</p>" if threat.get("text") else ""
    lead_md = threat.get("text", "")
    if threat.get("single_attack_text"):
        lead_html += f"<div class='verdict warn'>{html.escape(threat['single_attack_text'])}</div>"
        lead_md += "\n\n**" + threat["single_attack_text"] + "**"
    body = (f"{lead_html}<div class='top'><div>{table}<p class='note'>{html.escape(note)}</p></div>"
            f"<div>{fig.html}</div></div>")
    md = (lead_md + "\n\n" if lead_md else "") + md_table(headers, md_rows) + "\n\n" + note + "\n\n" + fig.markdown
    return Section("summary", "Robustness at a glance", body, md, data=head)


def _clean_text(meta: dict[str, Any]) -> str:
    """A model's clean accuracy on the test split, with its interval when its size is recorded."""
    r = rate_of(meta.get("clean_accuracy"), meta.get("n_test") or 0) or {}
    return pct_ci(meta.get("clean_accuracy"), r.get("ci_low"), r.get("ci_high"))


@register_section("warnings", order=15)
def warnings(ctx: ReportContext) -> Section | None:
    """Banners above the numbers: models that did not train, defenses that did not fit, defended
    models less robust than their base on the same samples."""
    lines = [f"{ctx.names.get(k, k)}: {m['warning']}" for k, m in ctx.doc["models"].items()
             if m.get("warning") and not m.get("defense_label")]
    lines += [f"{d['name']}: the defense did not fit: {d['warning']}" for d in ctx.doc.get("defended", [])
              if d.get("warning")]
    lines += [f"{c['name']}: {less_robust_text(c)}" for c in ctx.doc.get("base_comparison", []) if c["less_robust"]]
    if not lines:
        return None
    body = "".join(f"<div class='verdict bad'>{html.escape(t)}</div>" for t in lines)
    return Section("warnings", "Warnings", body, "\n".join(f"- **warning**: {t}" for t in lines), data=lines)


@register_section("models", order=25)
def models(ctx: ReportContext) -> Section | None:
    if not ctx.doc["models"]:
        return None
    from robustlab.report.headline import recipe_text

    defended = {d["model"]: d for d in ctx.doc.get("defended", [])}
    warned = any(m.get("warning") for m in ctx.doc["models"].values())
    n_test = (ctx.doc.get("data") or {}).get("n_test")
    headers = ["model", "backbone + head", "training", f"clean (test set{f', n={n_test}' if n_test else ''})",
               "base clean", "train time", *(["warning"] if warned else [])]
    rows, classes = [], []
    for key, m in ctx.doc["models"].items():
        cfg = m.get("config", {})
        secs = m.get("train_seconds")
        d = defended.get(key)
        training = (f"{d['defense']}, defended from {d['base_name']}" if d else recipe_text(m.get("train")))
        rows.append([ctx.names.get(key, key), f"{cfg.get('backbone', '?')} + {cfg.get('head', '?')}", training,
                     _clean_text(m), pct(d["base_clean_accuracy"]) if d else "",
                     f"{secs:.1f} s" if isinstance(secs, float | int) else "-",
                     *([m.get("warning") or ""] if warned else [])])
        classes.append("worst" if m.get("warning") else "")
    return Section("models", "Models", html_table(headers, rows, left=3, row_classes=classes),
                   md_table(headers, rows), data=ctx.doc["models"])


@register_section("details", order=30)
def details(ctx: ReportContext) -> Section | None:
    rows = ctx.doc["rows"]
    if not rows:
        return None
    extra = [(k, t) for k, t in CELL_METRICS if any(r.get(k) is not None for r in rows)]
    headers = [t for _, t in COLUMNS] + [t for _, t in extra]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["model"], r.get("defense", "none"))].append(r)
    html_parts, md_parts = [], []
    for (model, defense), grows in sorted(groups.items(), key=lambda kv: _model_order(ctx, kv[0][0])):
        cells = [c + [format_value(k, r.get(k)) for k, _ in extra]
                 for r, c in zip(grows, table_cells(grows, ctx.names), strict=True)]
        classes = ["worst" if r["attack"] == "worst-case" else "" for r in grows]
        name = ctx.name(model, defense)
        fig = ctx.figure(f"{name}", lambda style, g=grows, n=name: robust_accuracy_plot(
            g, f"{n}: robust accuracy vs eps", style=style), name)
        html_parts.append(f"<details><summary>{html.escape(name)}: {len(grows)} rows</summary>"
                          f"{html_table(headers, cells, left=3, row_classes=classes)}"
                          f"<div class='figs'>{fig.html}</div></details>")
        md_parts.append(f"### {name}\n\n{md_table(headers, cells)}\n\n{fig.markdown}")
    note = ("S / F / D split the initially-correct samples into attack Success, Failed and Detected "
            "(rejected); distances are means over successful adversarials on the [0, 1] pixel scale.")
    return Section("details", "Per-attack details", "".join(html_parts) + f"<p class='note'>{note}</p>",
                   "\n\n".join(md_parts) + "\n\n" + note, data=None)


@register_section("identification", order=40)
def identification(ctx: ReportContext) -> Section | None:
    data = (ctx.doc.get("data") or {}).get("name")
    ident = {k: m for k, m in ctx.doc["identification"].items()
             if shows_identification(ctx.doc["models"].get(k.partition(" [")[0]), data)}
    if not ident:
        return None
    headers = ["model", *(t for _, t in IDENTIFICATION_COLUMNS)]
    def cell(m: dict[str, Any], c: str) -> str:
        iv = (m.get("intervals") or {}).get(c) or {}
        return pct_ci(m.get(c), iv.get("ci_low"), iv.get("ci_high"))

    rows = [[ctx.names.get(k, k), *[cell(m, c) for c, _ in IDENTIFICATION_COLUMNS]] for k, m in ident.items()]
    adversarial = next((m.get("adversarial") for m in ident.values() if m.get("adversarial")), None)
    note = ("Accuracy from `predict`; FMR / FNMR / pair accuracy on verification pairs at the threshold of "
            "equal error rate on a validation half (paper 002, eq. 3.1-3.3); confidence = mean softmax of "
            "the scores" + (f", adversarial under {adversarial}." if adversarial else "."))
    body = html_table(headers, rows) + f"<p class='note'>{html.escape(note)}</p>"
    return Section("identification", "Identification", body, md_table(headers, rows) + "\n\n" + note, data=ident)


@register_section("masking", order=50)
def masking(ctx: ReportContext) -> Section | None:
    flags = ctx.doc["masking"]
    if not flags:
        return None
    verdicts = masking_verdicts(flags)
    verdicts = dict(sorted(verdicts.items(), key=lambda kv: _model_order(ctx, kv[0].partition(" [")[0])))

    def label(model: str) -> str:
        key, _, rest = model.partition(" [")
        return ctx.names.get(key, key) + (f" [{rest}" if rest else "")

    unfit = {f"{d['model']} [{d['defense']}]": d["warning"] for d in ctx.doc.get("defended", []) if d.get("warning")}
    weaker = {f"{c['model']} [{c['defense']}]": less_robust_text(c) for c in ctx.doc.get("base_comparison", [])
              if c["less_robust"]}
    for m, v in verdicts.items():  # a defense that did not fit, or is weaker than its base, is never shown green
        if m in unfit:
            v["verdict"] += f" But the defense did not fit ({unfit[m]})."
            v["unfit"] = True
        if m in weaker:
            v["verdict"] += f" The defended model is {weaker[m]}."
            v["unfit"] = True

    def tone(v: dict[str, Any]) -> str:
        if v["raised"] or v.get("unfit"):
            return "bad"
        return "warn" if v["not_run"] or not v["checks"] else "ok"

    html_v = "".join(f"<div class='verdict {tone(v)}'>{html.escape(label(m))}: "
                     f"{html.escape(v['verdict'])}</div>" for m, v in verdicts.items())
    md_v = "\n".join(f"- **{label(m)}**: {v['verdict']}" for m, v in verdicts.items())
    headers = ["model", "check", "flag", "detail"]
    shown = {"raised": "RAISED", "passed": "ok", "not run": "not run"}
    rows = [[label(f["model"]), f["check"], shown[f.get("status") or ("raised" if f["raised"] else "passed")],
             f["message"]] for f in flags]
    classes = ["worst" if f["raised"] else "" for f in flags]
    table = html_table(headers, rows, left=4, row_classes=classes)
    body = html_v + f"<details><summary>every check</summary>{table}</details>"
    return Section("masking", "Gradient-masking checks", body, md_v + "\n\n" + md_table(headers, rows),
                   data=verdicts)


@register_section("cell-metrics", order=60)
def cell_metrics(ctx: ReportContext) -> Section | None:
    rows = [r for r in ctx.doc["rows"] if any(r.get(k) is not None for k, _ in CELL_METRICS)]
    if not rows:
        return None
    keys = [(k, t) for k, t in CELL_METRICS if any(r.get(k) is not None for r in rows)]
    headers = ["model", "attack", "eps", *(t for _, t in keys)]
    cells = [[ctx.name(r["model"], r.get("defense", "none")), r["attack"], format_value("eps", r["eps"]),
              *[format_value(k, r.get(k)) for k, _ in keys]] for r in rows]
    return Section("cell-metrics", "Confidence and perceptual distance per cell", html_table(headers, cells, left=2),
                   md_table(headers, cells), data=[{k: r.get(k) for k in ("model", "attack", "eps", *dict(keys))}
                                                   for r in rows])


@register_section("distance", order=70)
def distance(ctx: ReportContext) -> Section | None:
    curves_rows = ctx.doc.get("distance_curves") or []
    if not curves_rows:
        return None
    curves: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in curves_rows:
        curves[f"{ctx.name(r['model'], r.get('defense', 'none'))}: {r['attack']} ({r['norm']})"].append(
            (r["eps"], r["robust_accuracy"]))
    fig = ctx.figure("distance", lambda style: comparison_plot(
        curves, style=style, ylabel="robust accuracy (%)", title="implied by minimum-norm distances"),
        "robust accuracy implied by minimum-norm attacks")
    grid = sorted({r["eps"] for r in curves_rows})
    headers = ["model: attack (norm)", *[f"eps {e:g}" for e in grid]]
    rows = [[name, *[pct(dict(pts).get(e)) for e in grid]] for name, pts in curves.items()]
    note = ("A sample survives eps when the model is right on it clean and the minimum-norm attack failed or "
            "needed more than eps in its own norm.")
    return Section("distance", "Distance curves (minimum-norm attacks)",
                   html_table(headers, rows) + f"<div class='figs'>{fig.html}</div><p class='note'>{note}</p>",
                   md_table(headers, rows) + "\n\n" + fig.markdown + "\n\n" + note, data=curves_rows)


@register_section("rank-pmf", order=80)
def rank_pmf(ctx: ReportContext) -> Section | None:
    pmfs = {f"{ctx.name(r['model'], r.get('defense', 'none'))}: {r['attack']} eps {format_value('eps', r['eps'])}":
            r["rank_pmf"] for r in ctx.doc["rows"] if r.get("rank_pmf")}
    if not pmfs:
        return None
    def render(style: str) -> bytes:
        with style_context(style):
            return rank_pmf_plot(pmfs, "P(rank of the true label = j)")

    fig = ctx.figure("rank-pmf", render, "rank pmf")
    headers = ["set", "max_j P(rank = j)", "P(rank = 1)"]
    rows = [[k, f"{max(v):.3f}", f"{v[0]:.3f}"] for k, v in pmfs.items()]
    return Section("rank-pmf", "Rank of the true label (K-anonymity)",
                   html_table(headers, rows) + f"<div class='figs'>{fig.html}</div>",
                   md_table(headers, rows) + "\n\n" + fig.markdown, data=pmfs)


@register_section("environment", order=95)
def environment(ctx: ReportContext) -> Section | None:
    """What the run ran on (store meta "environment") and the commands that reproduce it."""
    env = ctx.doc.get("environment") or {}
    commands = [c for c in [env.get("command"), *(m.get("command") for m in ctx.doc["models"].values())] if c]
    if not env and not commands:
        return None
    data = env.get("data") or {}
    facts = [("robustlab", f"{env.get('robustlab', '?')} (commit {env.get('commit') or 'unknown'})"),
             ("torch", str(env.get("torch", "?"))),
             ("torch threads", f"{env.get('threads', '?')} intra-op (pinned), {env.get('interop_threads', '?')} "
              "inter-op" + (f"; training {env['train_threads']}" if env.get("train_threads") else "")),
             ("device", str(env.get("device", "?")) + (f" ({env['cuda']['gpu']})" if env.get("cuda") else "")),
             ("data", f"{data.get('name', '?')} version {data.get('version', '?')}, "
                      f"samples {data.get('samples', '?')}"),
             ("python / platform", f"{env.get('python', '?')} / {env.get('platform', '?')}")]
    unique = list(dict.fromkeys(commands))
    body = html_table(["", ""], [[k, v] for k, v in facts], left=2)
    md = md_table(["", ""], [[k, v] for k, v in facts])
    if unique:
        body += "<p class='note'>Reproduce with:</p>" + "".join(f"<pre>{html.escape(c)}</pre>" for c in unique)
        md += "\n\nReproduce with:\n\n" + "\n".join(f"    {c}" for c in unique)
    return Section("environment", "Environment and how to reproduce", body, md,
                   data={"environment": env, "commands": unique})


@register_section("notes", order=100)
def notes(ctx: ReportContext) -> Section | None:
    text = ("Robust accuracy counts samples classified correctly after the attack, judged by the model's real "
            "decision (`predict`: k-NN vote, nearest prototype, reject option included). The worst case takes, "
            "per sample, the strongest of the attacks at that eps. eps and distances are on the [0, 1] pixel scale.")
    return Section("notes", "How to read these numbers", f"<p class='note'>{html.escape(text)}</p>", text)
