"""The verification report of `anonymize`: report.json, report.md and rank_pmf.png."""

from __future__ import annotations

import json
from pathlib import Path

from robustlab.core.files import publish
from robustlab.privacy.anonymize import AnonymizeResult
from robustlab.report.rank_plot import rank_pmf_plot


def write_anonymize_report(result: AnonymizeResult, report_dir: str | Path) -> dict[str, Path]:
    """Write the report files into `report_dir` (created, files replaced atomically); return their paths."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    check = result.check
    K = check.K
    plot = report_dir / "rank_pmf.png"
    png = (
        rank_pmf_plot(
            {f"{K}-A3 (written files)": check.pmf},
            f"P(rank of the label = j) after anonymization, K = {K}",
            {f"1/K = {check.bound:.3f}": check.bound},
        )
    )
    doc = {
        "settings": result.settings,
        "kanonymity": check.__dict__,
        "similarity": result.similarity_name,
        "skipped": result.skipped,
        "images": result.records,
    }
    text = json.dumps(doc, indent=2)
    sim = result.similarity_name
    n = len(result.records)
    hidden = sum(r["hidden"] for r in result.records)
    lines = [
        f"# Anonymization report (K = {K})",
        "",
        f"- images: {n} (skipped, not images: {len(result.skipped)})",
        f"- labels from folders: {sum(r['label_source'] == 'folder' for r in result.records)}; "
        f"from the model's own top-1: {sum(r['label_source'] == 'model' for r in result.records)}",
        f"- label ranked >= its group's k in the written file: {hidden}/{n}",
        f"- top-1 still the label: {sum(r['rank_after'] == 1 for r in result.records)}/{n}",
        f"- K-anonymity (eq. 6): {check.summary()}",
        f"- mean MSE {sum(r['mse'] for r in result.records) / n:.3g}; "
        f"mean {sim.upper()} {sum(r[sim] for r in result.records) / n:.4f}",
        "",
        "![rank pmf](rank_pmf.png)",
        "",
        f"| file | label | source | k | rank before | rank after | hidden | MSE | {sim.upper()} |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['file']} | {r['label']} | {r['label_source']} | {r['k']} | {r['rank_before']} | "
        f"{r['rank_after']} | {'yes' if r['hidden'] else 'NO'} | {r['mse']:.3g} | {r[sim]:.4f} |"
        for r in result.records
    ]
    publish({plot: png, report_dir / "report.json": text.encode(),
             report_dir / "report.md": ("\n".join(lines) + "\n").encode()})
    return {"json": report_dir / "report.json", "markdown": report_dir / "report.md", "plot": plot}
