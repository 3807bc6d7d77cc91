"""`write_report(run_dir)`: report.html (self-contained, plots embedded, light and dark),
report.md and report.json, from the registered sections (`robustlab.report.sections`)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from robustlab.core.digest import label_name
from robustlab.core.files import publish
from robustlab.evaluate.defended import compare_with_base, defended_models
from robustlab.evaluate.selftests import selftest_results
from robustlab.evaluate.summary import distance_curves, identification_results, masking_flags, summarize
from robustlab.report import builtin, paper_sections, selftest_section  # noqa: F401  (register the sections)
from robustlab.report.headline import headline_rows, threat_model
from robustlab.report.page import render_page
from robustlab.report.sections import ReportContext, Section, ordered_sections
from robustlab.store.results import ResultStore, StoreError


def collect(run_dir: str | Path) -> dict[str, Any]:
    """Everything the report shows, as one JSON-able document."""
    run_dir = Path(run_dir)
    with ResultStore(run_dir, readonly=True) as store:  # a report never writes into the database
        rows = summarize(store)
        models = store.get_meta("models", {}) or {}
        models_doc = {k: {kk: vv for kk, vv in v.items() if kk != "history"} for k, v in models.items()}
        defended = defended_models(models_doc)
        head = headline_rows(rows, models_doc)
        return {
            "run_dir": str(run_dir.resolve()),
            "experiment": store.get_meta("experiment"),
            "data": store.get_meta("data"),
            "environment": store.get_meta("environment"),
            "models": models_doc,
            "defended": defended,
            "base_comparison": compare_with_base(rows, defended),
            "training": {k: v.get("history", []) for k, v in models.items()},
            "rows": rows,
            "headline": head,
            "threat_model": threat_model(rows, head),
            "distance_curves": distance_curves(store),
            "masking": masking_flags(store),
            "identification": identification_results(store),
            "selftests": selftest_results(store),
            "evaluation_sets": store.get_meta("evaluation_sets", {}) or {},
        }


def _data_line(data: dict[str, Any] | None) -> str:
    if not data:
        return ""
    return (f"Data: {data.get('name')} ({data.get('source')}), {data.get('n_train')} train / "
            f"{data.get('n_test')} test images, {data.get('n_eval')} attacked, shape {data.get('input_shape')}.")


def build_sections(ctx: ReportContext) -> list[Section]:
    """Every registered section that has something to show, in order."""
    return [s for _, fn in ordered_sections() if (s := fn(ctx)) is not None]


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write report.html, report.md and report.json for `run_dir` (into `out_dir`, default run_dir),
    all three published together and atomically (`robustlab.core.files.publish`): a full disk or a
    kill leaves the previous report whole. The run directory's database is only read."""
    doc = collect(run_dir)
    out = Path(out_dir or run_dir)
    if out.exists() and not out.is_dir():
        raise StoreError(f"{out} is a file, not a folder for the report")
    out.mkdir(parents=True, exist_ok=True)
    names = {k: v.get("id", label_name(k)) for k, v in doc["models"].items()}
    ctx = ReportContext(doc, names, out)
    sections = build_sections(ctx)
    title = f"robustlab report: {(doc.get('experiment') or {}).get('name', Path(run_dir).name)}"
    subtitle = _data_line(doc.get("data"))
    md = [f"# {title}", subtitle] + [f"## {s.title}\n\n{s.markdown}" for s in sections]
    doc["sections"] = {s.id: {"title": s.title, "data": s.data} for s in sections}
    publish({
        out / "report.md": ("\n\n".join(p for p in md if p) + "\n").encode(),
        out / "report.html": render_page(title, html.escape(subtitle), sections).encode(),
        out / "report.json": json.dumps(doc, indent=2, default=str, allow_nan=False).encode(),
    })
    return {"html": out / "report.html", "markdown": out / "report.md", "json": out / "report.json"}
