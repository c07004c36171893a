"""One interface for every report format, and the registry the CLI picks a format from.

A renderer turns a :class:`reports.output.Report` into the bytes of a file; it does no I/O and
computes nothing the other formats would not agree with (that is ``build_report``'s job).
Writing the bytes is the caller's: ``reports.atomic.write_atomic`` for a file, stdout for ``-``.
"""

from __future__ import annotations

import abc
from pathlib import PurePath
from typing import ClassVar, Literal, get_args

from reports.output import Report
from scanner.errors import UsageError

__all__ = ["CSV_KINDS", "FORMATS", "CsvKind", "Renderer", "format_for_path", "get_renderer"]

#: The report formats, as ``--format`` spells them.
FORMATS: tuple[str, ...] = ("html", "csv", "json")

CsvKind = Literal["findings", "inventory"]
#: ``--csv-kind`` values: one row per endpoint x finding, or one row per endpoint.
CSV_KINDS: tuple[str, ...] = get_args(CsvKind)


class Renderer(abc.ABC):
    """Renders a report in one format.

    ``format_name`` is the ``--format`` value, ``media_type`` the MIME type of the output (for
    HTTP responses and mail), ``extension`` the usual file suffix without the dot.
    """

    format_name: ClassVar[str]
    media_type: ClassVar[str]
    extension: ClassVar[str]

    @abc.abstractmethod
    def render(self, report: Report) -> bytes:
        """The whole output file for ``report``."""


def get_renderer(name: str, *, csv_kind: str = "findings") -> Renderer:
    """The renderer for format ``name``; ``csv_kind`` selects the CSV rows.

    Raises :class:`scanner.errors.UsageError` for an unknown format or CSV kind.
    """
    # Imported here: each format module imports this one for the base class.
    from reports.render.csv import CsvRenderer
    from reports.render.html import HtmlRenderer
    from reports.render.json import JsonRenderer

    match name.strip().lower():
        case "html":
            return HtmlRenderer()
        case "json":
            return JsonRenderer()
        case "csv":
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
    aliases = {".htm": "html", ".html": "html", ".csv": "csv", ".json": "json"}
    return aliases.get(PurePath(path).suffix.lower())
