"""Reports: tables and plots of a run directory into self-contained HTML, Markdown and JSON."""

from robustlab.report.build import collect, write_report
from robustlab.report.tables import markdown_table

__all__ = ["collect", "markdown_table", "write_report"]
