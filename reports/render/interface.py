"""One interface for every report format (the registry that picks one is the package face).

A renderer turns a :class:`reports.output.Report` into the bytes of a file; it does no I/O and
computes nothing the other formats would not agree with (that is ``build_report``'s job).
Writing the bytes is the caller's: ``reports.atomic.write_atomic`` for a file, stdout for ``-``.
"""

from __future__ import annotations

import abc
from typing import ClassVar, Literal, get_args

from reports.output import Report

__all__ = ["CSV_KINDS", "FORMATS", "CsvKind", "Renderer"]

#: The report formats, as ``--format`` spells them.
FORMATS: tuple[str, ...] = ("html", "csv", "json", "sarif", "junit")

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
