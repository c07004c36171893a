"""Report renderers: one small class per format behind :class:`Renderer`.

Theory of operation: ``interface`` declares the renderer contract and imports no format; each
format module (``csv``, ``html``, ``json``, ``sarif``, ``junit``) implements it and imports
only the interface and ``reports.output``; this face is the registry, the one place that knows
every format, and the caller (the CLI, the daemon's live report) picks one with
:func:`get_renderer`. Renderers do no I/O: writing the bytes is the caller's.
"""

from __future__ import annotations

from pathlib import PurePath

from reports.render.interface import CSV_KINDS, FORMATS, CsvKind, Renderer
from scanner.errors import UsageError

__all__ = ["CSV_KINDS", "FORMATS", "CsvKind", "Renderer", "format_for_path", "get_renderer"]


def get_renderer(name: str, *, csv_kind: str = "findings") -> Renderer:
    """The renderer for format ``name``; ``csv_kind`` selects the CSV rows.

    Raises :class:`scanner.errors.UsageError` for an unknown format or CSV kind. Each format's
    module is imported here, when it is picked (the HTML one loads jinja2).
    """
    match name.strip().lower():
        case "html":
            from reports.render.html import HtmlRenderer

            return HtmlRenderer()
        case "json":
            from reports.render.json import JsonRenderer

            return JsonRenderer()
        case "sarif":
            from reports.render.sarif import SarifRenderer

            return SarifRenderer()
        case "junit":
            from reports.render.junit import JunitRenderer

            return JunitRenderer()
        case "csv":
            from reports.render.csv import CsvRenderer

            if csv_kind == "findings":
                return CsvRenderer(kind="findings")
            if csv_kind == "inventory":
                return CsvRenderer(kind="inventory")
            kinds = ", ".join(CSV_KINDS)
            raise UsageError(f"unknown CSV kind {csv_kind!r} (expected one of {kinds})")
        case _:
            raise UsageError(
                f"unknown report format {name!r} (expected one of {', '.join(FORMATS)})"
            )


def format_for_path(path: str) -> str | None:
    """The format a file name implies by its suffix (``report.html`` -> ``html``), else None."""
    aliases = {
        ".htm": "html",
        ".html": "html",
        ".csv": "csv",
        ".json": "json",
        ".sarif": "sarif",
        ".xml": "junit",
    }
    return aliases.get(PurePath(path).suffix.lower())
