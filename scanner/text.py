"""One definition of safe text: certificate fields and server replies are attacker-controlled.

:func:`safe` turns any value into one printable line: control characters (C0, C1, DEL), bidi
overrides and every other format, line/paragraph separator, surrogate and private-use code point
are replaced with visible escapes, and the length is bounded. Every floor that shows text to a
person (the terminal, notes and errors, logs) uses it; renderers with their own escaping (HTML,
CSV, Prometheus labels) apply it before theirs.
"""

from __future__ import annotations

import unicodedata

__all__ = ["MAX_CELL", "safe"]

#: The default bound of :func:`safe`: a table cell.
MAX_CELL = 80


def safe(value: object, limit: int = MAX_CELL) -> str:
    """``value`` as one printable line: control and format characters escaped, length bounded."""
    text = "" if value is None else str(value)
    out: list[str] = []
    for ch in text:
        category = unicodedata.category(ch)
        if category in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    result = "".join(out)
    if len(result) > limit:
        result = result[: limit - 1] + "…"
    return result
