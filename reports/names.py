"""Host-name matching (RFC 6125) and safe quoting of certificate text in one-line messages.

Both are pure. :func:`hostname_matches` answers "do these SANs cover the name that was scanned"
the way browsers do: IP literals only against IP SANs, host names compared as lower-case A-labels,
and a wildcard only as the entire left-most label of a name with at least two more labels.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from scanner.text import escape

__all__ = ["clean", "hostname_matches", "quote"]


def hostname_matches(name: str, dns_sans: Sequence[str], ip_sans: Sequence[str]) -> bool:
    """Whether the SANs cover ``name`` (a host name, or an IP literal), per RFC 6125.

    IP literals match IP SANs only (by value, so IPv6 spellings compare equal). Host names
    compare case-insensitively as A-labels (a U-label name is IDNA-encoded first), without a
    trailing dot. A wildcard is honoured only as the whole left-most label of a SAN with at least
    two labels after it (``*.example.com``), and stands for exactly one non-empty label.
    """
    address = _ip(name)
    if address is not None:
        return any(_ip(san) == address for san in ip_sans)
    labels = _a_labels(name)
    if labels is None:
        return False
    return any(_dns_match(labels, san) for san in dns_sans)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


def _a_labels(name: str) -> list[str] | None:
    """``name`` as lower-case A-labels; ``None`` when it is not a usable host name."""
    name = name.strip().removesuffix(".")
    labels = name.split(".")
    out = []
    for label in labels:
        if not label or "*" in label:
            return None
        if label.isascii():
            out.append(label.lower())
            continue
        try:
            out.append(label.encode("idna").decode("ascii").lower())
        except UnicodeError:
            return None
    return out


def _dns_match(labels: list[str], san: str) -> bool:
    if not san.isascii():  # a SAN must hold A-labels; a raw U-label is malformed
        return False
    pattern = san.strip().lower().removesuffix(".").split(".")
    if any(not p for p in pattern):
        return False
    if pattern[0] == "*":
        rest = pattern[1:]
        if len(rest) < 2 or any("*" in p for p in rest):
            return False
        return len(labels) == len(pattern) and labels[1:] == rest
    return "*" not in san and labels == pattern


def clean(text: str, *, limit: int = 120) -> str:
    """``text`` made safe inside a one-line message.

    Certificate text is attacker-controlled: every code point :func:`scanner.text.hostile` names
    is shown as a ``\\xNN`` / ``\\uNNNN`` escape, and text longer than ``limit`` characters is
    cut with an ellipsis. This is not
    markup escaping: renderers still escape for HTML, CSV and the rest.
    """
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return escape(text)


def quote(text: str, *, limit: int = 120) -> str:
    """:func:`clean` ``text`` in single quotes."""
    return "'" + clean(text, limit=limit) + "'"
