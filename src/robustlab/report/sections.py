"""The report's extension point: a registry of sections, each one function of the collected document.

A section function takes a `ReportContext` and returns a `Section` (or None to leave itself
out). `write_report` calls every registered function in `order` and puts each section's
``html`` in report.html, its ``markdown`` in report.md and its ``data`` in
report.json["sections"][id], so the three files carry the same content. To add one::

    from robustlab.report import Section, register_section

    @register_section("notes-of-my-lab", order=95)
    def lab_notes(ctx):
        n = len(ctx.doc["rows"])
        if not n:
            return None
        text = f"{n} stored cells."
        return Section("notes-of-my-lab", "Lab notes", html=f"<p>{text}</p>", markdown=text, data={"cells": n})
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustlab.core.digest import label_name
from robustlab.core.registry import Registry


@dataclass
class Section:
    """One block of the report. ``html`` / ``markdown`` are the body (no heading: the page adds
    ``title``); ``data`` is the JSON-able content behind them; ``collapsed`` folds the HTML
    body into a <details> element closed by default."""

    id: str
    title: str
    html: str
    markdown: str
    data: Any = None
    collapsed: bool = False


@dataclass
class Figure:
    """A plot written next to the report: an <img>/<picture> tag (light and dark variants
    embedded) and a Markdown image link to the light PNG file."""

    html: str
    markdown: str
    file: str


@dataclass
class ReportContext:
    """What a section function sees: the collected document (`robustlab.report.collect`),
    display names of the model keys, and the output directory for figure files."""

    doc: dict[str, Any]
    names: dict[str, str]
    out_dir: Path
    files: list[Path] = field(default_factory=list)

    def name(self, model_key: str, defense: str = "none") -> str:
        """Display name of a model key, with the defense in brackets when there is one."""
        base = self.names.get(model_key, label_name(model_key))
        return base if defense in ("none", None, "") else f"{base} [{defense}]"

    def figure(self, stem: str, render: Callable[[str], bytes], alt: str) -> Figure:
        """Render a plot twice (``render("light")``, ``render("dark")``: PNG bytes), embed both
        (the dark one shown under prefers-color-scheme: dark) and write the light one to
        ``<out_dir>/plot-<stem>.png`` for the Markdown report."""
        light, dark = render("light"), render("dark")
        fname = "plot-" + re.sub(r"[^A-Za-z0-9._-]+", "_", stem) + ".png"
        path = self.out_dir / fname
        _atomic_write_bytes(path, light)
        self.files.append(path)
        alt_e = html.escape(alt)
        tag = (
            f"<picture><source media='(prefers-color-scheme: dark)' srcset='{_data_uri(dark)}'/>"
            f"<img alt='{alt_e}' src='{_data_uri(light)}'/></picture>"
        )
        return Figure(tag, f"![{alt}]({fname})", fname)


SectionFn = Callable[[ReportContext], "Section | None"]


@dataclass(frozen=True)
class SectionEntry:
    """A registered section: its function and its place (`order`, ascending)."""

    order: int
    fn: SectionFn


SECTIONS: Registry[SectionEntry] = Registry("report section")


def register_section(section_id: str, order: int) -> Callable[[SectionFn], SectionFn]:
    """Register `fn(ctx) -> Section | None` under `section_id`, placed by `order` (ascending;
    the built-ins use 10, 20, ..., 100: pick a value in between to slot a section in)."""

    def decorate(fn: SectionFn) -> SectionFn:
        SECTIONS.register(section_id, SectionEntry(order, fn))
        return fn

    return decorate


def ordered_sections() -> list[tuple[str, SectionFn]]:
    return [(k, e.fn) for k, e in sorted(SECTIONS.items(), key=lambda kv: (kv[1].order, kv[0]))]


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
