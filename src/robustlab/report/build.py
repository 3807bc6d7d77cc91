"""`write_report(run_dir)`: report.html (self-contained, plots embedded), report.md, report.json."""

from __future__ import annotations

import base64
import html
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from robustlab.core.files import publish
from robustlab.evaluate.summary import WORST, identification_results, masking_flags, summarize
from robustlab.report.plots import comparison_plot, robust_accuracy_plot
from robustlab.report.tables import IDENTIFICATION_COLUMNS, html_table, markdown_table
from robustlab.store.results import ResultStore, StoreError

_CSS = """
body{font-family:system-ui,-apple-system,sans-serif;max-width:1100px;margin:2em auto;color:#222;padding:0 1em}
table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:nth-child(-n+3){text-align:left}tr.worst{font-weight:600;background:#fff6e0}
.plots img{max-width:48%;margin:4px}.note{color:#555;font-size:13px}
"""


def collect(run_dir: str | Path) -> dict[str, Any]:
    """Everything the report shows, as one JSON-able document."""
    run_dir = Path(run_dir)
    with ResultStore(run_dir, readonly=True) as store:
        rows = summarize(store)
        models = store.get_meta("models", {}) or {}
        return {
            "run_dir": str(run_dir.resolve()),
            "experiment": store.get_meta("experiment"),
            "data": store.get_meta("data"),
            "models": {k: {kk: vv for kk, vv in v.items() if kk != "history"} for k, v in models.items()},
            "training": {k: v.get("history", []) for k, v in models.items()},
            "extra": store.get_meta("extra", {}) or {},
            "rows": rows,
            "masking": masking_flags(store),
            "identification": identification_results(store),
            "evaluation_sets": store.get_meta("evaluation_sets", {}) or {},
        }


def _png(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}"/>'


def _masking_html(flags: list[dict[str, Any]], names: dict[str, str]) -> str:
    rows = []
    for f in flags:
        cls = ' class="worst"' if f["raised"] else ""
        cells = (names.get(f["model"], f["model"]), f["check"], "RAISED" if f["raised"] else "ok", f["message"])
        rows.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{t}</th>" for t in ("model", "check", "flag", "detail"))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _identification_rows(ident: dict[str, dict[str, Any]], names: dict[str, str]) -> list[list[str]]:
    return [
        [names.get(k, k)] + [f"{100 * m[c]:.1f}%" if m.get(c) is not None else "-" for c, _ in IDENTIFICATION_COLUMNS]
        for k, m in ident.items()
    ]


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write report.html, report.md, report.json and the plots for `run_dir` (into `out_dir`,
    default run_dir), atomically (`robustlab.core.files.publish`); the run directory's database is only read."""
    doc = collect(run_dir)
    out = Path(out_dir or run_dir)
    if out.exists() and not out.is_dir():
        raise StoreError(f"{out} is a file, not a folder for the report")
    out.mkdir(parents=True, exist_ok=True)
    files: dict[Path, bytes] = {}
    names = {k: v.get("id", k) for k, v in doc["models"].items()}
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in doc["rows"]:
        by_model[r["model"]].append(r)

    images, md_images = [], []
    for key, rows in by_model.items():
        png = robust_accuracy_plot(rows, f"{names.get(key, key)}: robust accuracy vs eps")
        fname = f"plot-{names.get(key, key)}.png".replace("/", "_").replace(":", "_")
        files[out / fname] = png
        images.append(_png(png, names.get(key, key)))
        md_images.append(f"![{names.get(key, key)}]({fname})")
    worst = {names.get(k, k): [r for r in rows if r["attack"] == WORST] for k, rows in by_model.items()}
    if len(worst) > 1 and any(worst.values()):
        png = comparison_plot(worst)
        files[out / "plot-comparison.png"] = png
        images.insert(0, _png(png, "comparison"))
        md_images.insert(0, "![comparison](plot-comparison.png)")

    data = doc.get("data") or {}
    models_md = [
        f"- **{v.get('id', k)}**: {v['config']['backbone']} + {v['config']['head']}"
        + (f", clean test accuracy {100 * v['clean_accuracy']:.1f}%" if v.get("clean_accuracy") is not None else "")
        + (f", trained in {v['train_seconds']:.1f} s" if v.get("train_seconds") is not None else "")
        for k, v in doc["models"].items()
    ]
    data_line = (
        f"Data: **{data.get('name')}** ({data.get('source')}), {data.get('n_train')} train / "
        f"{data.get('n_test')} test images, {data.get('n_eval')} attacked, shape {data.get('input_shape')}."
        if data
        else ""
    )
    notes = (
        "Robust accuracy counts samples classified correctly after the attack (judged by the model's real "
        "decision, `predict`). S / F / D split the initially-correct samples into attack Success, Failed and "
        "Detected (rejected). The worst-case row takes, per sample, the strongest of the attacks at that eps. "
        "Distances are in pixel units on the [0, 1] scale, averaged over successful adversarial examples."
    )
    masking_md = ["| model | check | flag | detail |", "|---|---|---|---|"] + [
        f"| {names.get(f['model'], f['model'])} | {f['check']} | {'RAISED' if f['raised'] else 'ok'} | {f['message']} |"
        for f in doc["masking"]
    ]
    masking_html = _masking_html(doc["masking"], names)
    ident_rows = _identification_rows(doc["identification"], names)
    adversarial = next((m.get("adversarial") for m in doc["identification"].values() if m.get("adversarial")), None)
    ident_note = (
        "Accuracy from `predict`; FMR / FNMR / pair accuracy on verification pairs (every same-class pair plus as "
        "many random different-class pairs) at the threshold of equal error rate on a validation half (paper 002, "
        "eq. 3.1-3.3); confidence = mean softmax of the scores"
        + (f", adversarial under {adversarial}." if adversarial else ".")
    )
    ident_md = [
        "| model | " + " | ".join(t for _, t in IDENTIFICATION_COLUMNS) + " |",
        "|---" * (len(IDENTIFICATION_COLUMNS) + 1) + "|",
    ]
    ident_md += ["| " + " | ".join(r) + " |" for r in ident_rows]
    ident_head = "".join(f"<th>{t}</th>" for t in ["model", *(t for _, t in IDENTIFICATION_COLUMNS)])
    ident_html = (
        f"<table><thead><tr>{ident_head}</tr></thead><tbody>"
        + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in ident_rows)
        + "</tbody></table>"
    )
    title = f"robustlab report: {(doc.get('experiment') or {}).get('name', Path(run_dir).name)}"
    md = "\n\n".join(
        [
            f"# {title}",
            data_line,
            "\n".join(models_md),
            markdown_table(doc["rows"], names),
            notes,
            "## Identification",
            "\n".join(ident_md) if ident_rows else "(not measured)",
            ident_note,
            "## Gradient-masking checks",
            "\n".join(masking_md),
            *md_images,
        ]
    )
    files[out / "report.md"] = (md + "\n").encode()
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(data_line).replace('**', '')}</p><ul>"
        + "".join(f"<li>{html.escape(m[2:]).replace('**', '')}</li>" for m in models_md)
        + f"</ul><h2>Results</h2>{html_table(doc['rows'], names)}<p class='note'>{html.escape(notes)}</p>"
        + (f"<h2>Identification</h2>{ident_html}<p class='note'>{html.escape(ident_note)}</p>" if ident_rows else "")
        + f"<h2>Gradient-masking checks</h2>{masking_html}"
        f"<h2>Robust accuracy versus eps</h2><div class='plots'>{''.join(images)}</div></body></html>"
    )
    files[out / "report.html"] = page.encode()
    files[out / "report.json"] = json.dumps(doc, indent=2, default=str, allow_nan=False).encode()
    publish(files)
    return {"html": out / "report.html", "markdown": out / "report.md", "json": out / "report.json"}
