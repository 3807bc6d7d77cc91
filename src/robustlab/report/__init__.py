"""Reports: a run directory into self-contained HTML, Markdown and JSON, section by section.

Add a section with `register_section` (see `robustlab.report.sections`)."""

from robustlab.report.build import build_sections, collect, write_report
from robustlab.report.headline import headline_rows, recipe_text
from robustlab.report.page import html_table, md_table
from robustlab.report.sections import Figure, ReportContext, Section, register_section
from robustlab.report.tables import markdown_table

__all__ = [
    "Figure",
    "ReportContext",
    "Section",
    "build_sections",
    "collect",
    "headline_rows",
    "html_table",
    "markdown_table",
    "md_table",
    "recipe_text",
    "register_section",
    "write_report",
]
