"""Reading a list file: targets (``-f``), exclusions, a blocklist or SNI names, one entry per
line with ``#`` comments (parsed by :func:`scanner.plan.targets.parse_lines`)."""

from __future__ import annotations

import sys
from pathlib import Path

from scanner.errors import UsageError
from scanner.plan import targets

__all__ = ["read_list_file"]


def read_list_file(path: Path) -> list[str]:
    """Entries of a targets/exclude/blocklist file (``-`` reads standard input)."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"cannot read {path}: {reason}") from None
    return targets.parse_lines(text, source=str(path))
