"""Log lines of ``certscan serve`` on stderr: ``text`` (one readable line) or ``json`` (one JSON
object per line: ``ts``, ``level``, ``logger``, ``event`` and the record's extra fields).

Modules log with the standard library (``log.info("job finished", extra={"job": name})``);
:func:`setup_logging` installs the one handler on the root logger. Messages and field values may
carry text from the network (certificate names, server errors): both formats escape every code
point :func:`scanner.text.hostile` names (``\\u202e``), so one record is always one line and no
log viewer reorders or hides text.
"""

from __future__ import annotations

import json
import logging
import sys
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, TextIO

from scanner.sweep.counters import SweepCounters
from scanner.sweep.events import Tick, quiet_progress
from scanner.text import escape

__all__ = ["LogEvents", "setup_logging"]

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _one_line(text: str) -> str:
    return escape(text)


def _lines(text: str) -> str:
    """A traceback: each line escaped, the line breaks kept."""
    return "\n".join(escape(line) for line in text.splitlines())


def _clean_value(value: Any) -> Any:
    """A field value for JSON: text with hostile code points escaped (inside lists and mappings
    too), numbers and flags as they are."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return [_clean_value(v) for v in value]
    if isinstance(value, dict):
        return {escape(k): _clean_value(v) for k, v in value.items()}
    return escape(value)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": escape(record.getMessage()),
        }
        for key, value in _fields(record).items():
            out.setdefault(escape(key), _clean_value(value))
        if record.exc_info:
            out["traceback"] = _lines(self.formatException(record.exc_info))
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = _one_line(f"{ts} {record.levelname.lower()} {record.getMessage()} {extra}".rstrip())
        if record.exc_info:
            line += "\n" + _lines(self.formatException(record.exc_info))
        return line


def setup_logging(fmt: str, stream: TextIO | None = None) -> None:
    """Send every log record at INFO and above to ``stream`` (stderr) in format ``fmt``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.INFO)


class LogEvents:
    """A sweep's events (:class:`scanner.sweep.events.SweepEvents`) as log records of ``logger``
    with ``fields`` (the job): each note is one INFO record; progress and the summary are left
    to the daemon, which logs one "scan stored" record per run."""

    def __init__(self, logger: logging.Logger, **fields: Any) -> None:
        self._logger, self._fields = logger, fields

    def note(self, text: str) -> None:
        if text.strip():
            self._logger.info(text.strip(), extra=self._fields)

    def live(self, counters: SweepCounters) -> AbstractContextManager[Tick]:
        return quiet_progress()

    def finished(self, counters: SweepCounters, *, scan_id: int | None, db_label: str) -> None:
        return None
