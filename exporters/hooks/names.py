"""The one host-name check of the renewal hooks (pure): which names a hook may order, pass on or
print.

A certificate's SANs are written by whoever made the certificate, and a scanned server may be
hostile, so a name reaches a CA order, a ``CERTSCAN_NAMES`` value or a DNS script only when it
is a plain DNS host name in ASCII (A-labels: ``xn--`` labels must decode as Punycode), at most
253 characters, labels of 1-63 letters, digits and inner hyphens, not all-numeric at the end
(that would be an address), and a leading ``*.`` only where wildcards are allowed. A set of names
is at most :data:`MAX_NAMES` long (the CAs' own limit).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["MAX_NAMES", "Selection", "check", "printable", "select"]

#: The most names one certificate order may hold (Let's Encrypt's limit).
MAX_NAMES: Final = 100
_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_MAX_NAME: Final = 253


def check(name: str, *, wildcard: bool = False) -> str | None:
    """Why ``name`` is not an orderable host name, or None when it is (pure)."""
    if not isinstance(name, str) or not name:
        return "empty name"
    if not name.isascii():
        return "not ASCII (give the A-label, xn--...)"
    if len(name) > _MAX_NAME:
        return f"longer than {_MAX_NAME} characters"
    if name != name.lower():
        return "not lower case"
    labels = name.split(".")
    if labels[0] == "*":
        if not wildcard:
            return "a wildcard, and this hook does not allow wildcards"
        labels = labels[1:]
        if len(labels) < 2:
            return "a wildcard directly under a top-level domain"
    if len(labels) < 2:
        return "a single label"
    for label in labels:
        if not _LABEL.fullmatch(label):
            return f"label {printable(label, 70)} is not letters, digits and inner hyphens"
        if label[2:4] == "--" and not label.startswith("xn--"):
            return f"label {label} has -- in positions 3-4 but is not an A-label"
        if label.startswith("xn--"):
            try:
                label[4:].encode("ascii").decode("punycode")
            except (UnicodeError, ValueError):
                return f"label {label} is not valid Punycode"
    if labels[-1].isdigit():
        return "ends in a numeric label (an address, not a name)"
    return None


def printable(text: str, limit: int = 100) -> str:
    """``text`` with every non-printable character escaped, cut to ``limit`` characters (pure):
    safe in a log line, a history row or a terminal."""
    shown = "".join(c if c.isprintable() and c != "\\" else _escape(c) for c in text[: limit * 2])
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _escape(char: str) -> str:
    code = ord(char)
    if char == "\\":
        return "\\\\"
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Selection:
    """The names kept from a candidate list and those refused, with why."""

    kept: tuple[str, ...]  # in first-seen order, no duplicates, each passing :func:`check`
    refused: tuple[tuple[str, str], ...]  # (the name as printable text, the reason)

    def refusal(self) -> str:
        """One line naming the refused names (empty when none was)."""
        if not self.refused:
            return ""
        shown = "; ".join(f"{name} ({why})" for name, why in self.refused[:5])
        more = f" and {len(self.refused) - 5} more" if len(self.refused) > 5 else ""
        return f"refused {len(self.refused)} name(s) not in the hook's config: {shown}{more}"


def select(
    candidates: Iterable[str], *, globs: Sequence[str] = (), wildcard: bool = False
) -> Selection:
    """Keep the candidates that pass :func:`check` and (when ``globs`` is given) match one of
    the lowercase ``globs``, at most :data:`MAX_NAMES` (pure)."""
    kept: list[str] = []
    refused: list[tuple[str, str]] = []
    for name in dict.fromkeys(candidates):
        why = check(name, wildcard=wildcard)
        if why is None and globs and not any(fnmatch.fnmatchcase(name, g) for g in globs):
            why = "matches none of match_names"
        if why is None and len(kept) >= MAX_NAMES:
            why = f"more than {MAX_NAMES} names"
        if why is None:
            kept.append(name)
        else:
            refused.append((printable(name, 80), why))
    return Selection(kept=tuple(kept), refused=tuple(refused))
