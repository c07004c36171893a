"""Log lines of ``certscan serve`` on stderr: ``text`` (one readable line) or ``json`` (one JSON
object per line: ``ts``, ``level``, ``logger``, ``event`` and the record's extra fields).

Modules log with the standard library (``log.info("job finished", extra={"job": name})``);
:func:`setup_logging` installs the one handler on the root logger. Messages and field values may
carry text from the network (certificate names, server errors): JSON escapes them, and the text
format replaces control characters, so one record is always one line.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = ["LogStream", "setup_logging"]

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _one_line(text: str) -> str:
    return "".join(c if c.isprintable() else "\ufffd" for c in text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in _fields(record).items():
            out.setdefault(key, value)
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = _one_line(f"{ts} {record.levelname.lower()} {record.getMessage()} {extra}".rstrip())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(fmt: str, stream: TextIO | None = None) -> None:
    """Send every log record at INFO and above to ``stream`` (stderr) in format ``fmt``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.INFO)


class LogStream(io.TextIOBase):
    """A write-only text stream that logs each complete line (for a rich Console whose output,
    like a sweep's notes, should become log records)."""

    def __init__(self, logger: logging.Logger, **fields: Any) -> None:
        self._logger, self._fields, self._buffer = logger, fields, ""

    def write(self, text: str) -> int:
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            if line.strip():
                self._logger.info(line.strip(), extra=self._fields)
        return len(text)

    def writable(self) -> bool:
        return True
