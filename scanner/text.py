"""One definition of safe text: certificate fields and server replies are attacker-controlled.

:func:`hostile` is the single answer to "may this code point reach a person as it is?". It is
``True`` for every control character (C0, C1, DEL), every format character (bidi embeddings,
overrides and isolates, U+061C, zero-width characters, U+2060–U+2064, tag characters, the
byte-order mark, interlinear annotation), line and paragraph separators, surrogates, private-use
and unassigned code points, and the invisible letters that Unicode classes as letters (the Hangul
fillers, the combining grapheme joiner, the Khmer inherent vowels). Zero-width joiners are
included: certificate names are identifiers, and an invisible joiner is how two different names
are made to look the same.

Every output that shows text uses it, each with its own visible replacement:

* :func:`safe` (the terminal, notes, errors, logs, CSV cells, finding messages) writes
  ``\\xNN`` / ``\\uNNNN`` escapes and bounds the length;
* :func:`escape` is the same without the bound;
* :func:`marked` (the HTML report) writes ``⟨U+202E⟩`` markers.

Prometheus label values keep their own rule (a replacement character), because a label value is
compared, not read.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

__all__ = ["MAX_CELL", "escape", "hostile", "marked", "safe"]

#: The default bound of :func:`safe`: a table cell.
MAX_CELL = 80

#: Unicode general categories that are never shown raw.
_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})

#: Letters and marks that render as nothing (Unicode classes them as ``Lo`` or ``Mn``).
_INVISIBLE = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0")


def hostile(ch: str) -> bool:
    """Whether the one code point ``ch`` must be replaced before a person sees it."""
    return ch in _INVISIBLE or unicodedata.category(ch) in _CATEGORIES


def _backslash(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _marker(ch: str) -> str:
    return f"⟨U+{ord(ch):04X}⟩"


def _replace(text: str, how: Callable[[str], str]) -> str:
    if text.isascii() and text.isprintable():  # the common case, one C call
        return text
    return "".join(how(ch) if hostile(ch) else ch for ch in text)


def escape(value: object) -> str:
    """``value`` with every hostile code point as a ``\\xNN`` / ``\\uNNNN`` escape."""
    return _replace("" if value is None else str(value), _backslash)


def marked(text: str) -> str:
    """``text`` with every hostile code point as a visible ``⟨U+202E⟩`` marker (HTML)."""
    return _replace(text, _marker)


def safe(value: object, limit: int = MAX_CELL) -> str:
    """``value`` as one printable line: hostile code points escaped, length bounded."""
    result = escape(value)
    if len(result) > limit:
        result = result[: limit - 1] + "…"
    return result
