"""Where a report goes: a file (written atomically) or standard output (as bytes).

:func:`report_output` checks the output options before any work is done (format given or implied
by the extension, CSV kind, the file's directory); :func:`write_report` renders and writes;
:func:`write_stdout` is the one way certscan writes bytes (a report, a metrics page) to stdout.
Paths are the operator's, but any text of theirs in an error goes through
:func:`scanner.text.safe`.
"""

from __future__ import annotations

import io
import os
import secrets
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, TextIO, cast

from reports.atomic import _fsync_directory, _is_special, _keep_mode, write_atomic
from reports.model import EndpointView
from reports.output import Report, ScanInfo
from reports.render import FORMATS, format_for_path, get_renderer
from scanner.errors import OperationalError, UsageError
from scanner.text import safe

__all__ = ["ReportOutput", "report_output", "stream_report", "write_report", "write_stdout"]


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


def stream_report(
    batches: Iterable[Iterable[EndpointView]],
    output: ReportOutput,
    *,
    generated_at: datetime,
    scan: ScanInfo | None,
    stdout: TextIO | None = None,
) -> int:
    """Write a JSON or CSV report of the views as they arrive, a batch at a time (atomically
    for a file: a temporary file in its directory, fsynced, then renamed); returns the bytes
    written. Memory stays at one batch (see :func:`reports.render.json.write_json`)."""
    from reports.render.csv import CsvRenderer
    from reports.render.json import write_json

    def write(out: BinaryIO) -> None:
        if output.format == "json":
            write_json(batches, out, generated_at=generated_at, scan=scan)
        elif output.format == "csv":
            renderer = get_renderer("csv", csv_kind=output.csv_kind)
            assert isinstance(renderer, CsvRenderer)
            renderer.write(batches, out, generated_at=generated_at)
        else:
            raise ValueError(f"no streaming renderer for {output.format}")

    if output.to_stdout:
        stream = stdout if stdout is not None else sys.stdout
        stream.flush()
        counter = _Counting(getattr(stream, "buffer", None) or _TextSink(stream))
        write(cast(BinaryIO, counter))
        counter.flush()
        return counter.size
    target = Path(output.path).expanduser()
    try:
        return _atomic_stream(target, write)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OperationalError(f"cannot write report {safe(output.path, 200)}: {reason}") from None


class _TextSink(io.RawIOBase):
    """Bytes to a text stream without a binary buffer (decoded as UTF-8)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.stream.write(bytes(data).decode("utf-8"))
        return len(data)

    def flush(self) -> None:
        self.stream.flush()


class _Counting(io.RawIOBase):
    """A binary stream that counts what passes to ``inner``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.inner.write(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self.inner.flush()


def _atomic_stream(target: Path, write: Callable[[BinaryIO], None]) -> int:
    """Like :func:`reports.atomic.write_atomic`, with the bytes written by ``write`` as they
    come: a fresh temporary file beside ``target``, fsynced, then renamed over it (removed on
    any failure); a device or a pipe is written into."""
    if _is_special(target):
        with open(target, "wb") as raw:
            counter = _Counting(raw)
            write(cast(BinaryIO, counter))
            return counter.size
    temp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temp, flags, 0o666)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as raw:
            _keep_mode(raw.fileno(), target)
            counter = _Counting(raw)
            write(cast(BinaryIO, counter))
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)
    return counter.size


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
