"""Where a report goes: a file (written atomically) or standard output (as bytes).

:func:`report_output` checks the output options before any work is done (format given or implied
by the extension, CSV kind, the file's directory); :func:`write_report` renders and writes;
:func:`write_stdout` is the one way certscan writes bytes (a report, a metrics page) to stdout.
Paths are the operator's, but any text of theirs in an error goes through
:func:`scanner.text.safe`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from reports.atomic import write_atomic
from reports.output import Report
from reports.render import FORMATS, format_for_path, get_renderer
from scanner.errors import OperationalError, UsageError
from scanner.text import safe

__all__ = ["ReportOutput", "report_output", "write_report", "write_stdout"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportOutput:
    """Where and how a report is written. ``path`` ``-`` is standard output."""

    path: str
    format: str
    csv_kind: str = "findings"

    @property
    def to_stdout(self) -> bool:
        return self.path == "-"


def report_output(
    path: str, fmt: str | None, csv_kind: str = "findings", *, option: str = "-o"
) -> ReportOutput:
    """Check the output options before any work: the format (given, or implied by the file's
    extension; HTML otherwise), the CSV kind, and that the file's directory exists."""
    path = path.strip() or "-"
    name = fmt.strip().lower() if fmt else None
    if name is None:
        name = "html" if path == "-" else format_for_path(path)
        if name is None:
            raise UsageError(
                f"{option} {safe(path, 200)}: cannot tell the format from the extension; "
                f"use --format {'|'.join(FORMATS)}"
            )
    get_renderer(name, csv_kind=csv_kind)  # UsageError for an unknown format or CSV kind
    if path != "-":
        parent = Path(path).expanduser().absolute().parent
        if not parent.is_dir():
            raise UsageError(f"{option} {safe(path, 200)}: directory {safe(parent, 200)} not found")
        if Path(path).is_dir():
            raise UsageError(f"{option} {safe(path, 200)}: is a directory")
    return ReportOutput(path=path, format=name, csv_kind=csv_kind)


def write_report(report: Report, output: ReportOutput, *, stdout: TextIO | None = None) -> int:
    """Render ``report`` and write it (atomically for a file; ``-``: to ``stdout``, default
    ``sys.stdout``, as bytes when it has a binary buffer); returns the bytes written."""
    data = get_renderer(output.format, csv_kind=output.csv_kind).render(report)
    if output.to_stdout:
        write_stdout(data, stdout)
        return len(data)
    try:
        write_atomic(Path(output.path).expanduser(), data)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OperationalError(f"cannot write report {safe(output.path, 200)}: {reason}") from None
    return len(data)


def write_stdout(data: bytes, stream: TextIO | None = None) -> None:
    """Write ``data`` to ``stream`` (default ``sys.stdout``): through its binary buffer when it
    has one, else decoded as UTF-8."""
    stream = stream if stream is not None else sys.stdout
    stream.flush()
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:
        buffer.write(data)
        buffer.flush()
    else:
        stream.write(data.decode("utf-8"))
        stream.flush()
