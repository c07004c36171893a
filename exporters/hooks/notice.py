"""What a notification says (pure): one certificate with every endpoint presenting it, or a
daily digest of several.

A :class:`Notice` is one certificate's finding, built from the runner's
:class:`~exporters.hooks.base.HookContext` (:func:`notice_of`) or from the JSON context a digest
kept (:func:`notice_from`). It names the certificate once and lists its endpoints, at most
:data:`MAX_ENDPOINTS` of them and then "and N more". A :class:`Digest` is the notices one hook
collected over one UTC day, at most :data:`MAX_DIGEST_CERTIFICATES` shown. The texts here are
raw (certificate-derived, attacker-controlled): each renderer (``email``, ``formats``) makes
them one printable line and escapes them for its target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from exporters.hooks.base import HookContext

__all__ = [
    "MAX_DIGEST_CERTIFICATES",
    "MAX_ENDPOINTS",
    "Digest",
    "Notice",
    "endpoint_text",
    "listed",
    "notice_from",
    "notice_of",
]

#: Endpoints a message lists for one certificate before "and N more".
MAX_ENDPOINTS: Final = 10
#: Certificates a digest message shows before "and N more certificates".
MAX_DIGEST_CERTIFICATES: Final = 40

Address = tuple[str, int, str | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    """One certificate's finding, and every endpoint presenting the certificate."""

    hook: str
    kind: str
    severity: str
    message: str
    names: tuple[str, ...]
    not_after: str | None  # ISO 8601 UTC; None when unknown
    sha256: str
    endpoints: tuple[Address, ...]  # never empty


@dataclass(frozen=True, slots=True, kw_only=True)
class Digest:
    """One hook's findings of one UTC day ``[window_start, window_end)``."""

    hook: str
    window_start: datetime
    window_end: datetime
    notices: tuple[Notice, ...]
    #: The findings as certscan's JSON, as collected (the ``generic`` webhook body carries them).
    contexts: tuple[Mapping[str, Any], ...] = ()


def notice_of(ctx: HookContext) -> Notice:
    endpoints = ctx.endpoints or ((ctx.address, ctx.port, ctx.sni),)
    return Notice(
        hook=ctx.hook,
        kind=ctx.kind,
        severity=ctx.severity,
        message=ctx.message,
        names=ctx.names,
        not_after=None if ctx.not_after is None else ctx.not_after.isoformat(),
        sha256=ctx.sha256,
        endpoints=endpoints,
    )


def notice_from(data: Mapping[str, Any]) -> Notice:
    """From the JSON context a digest stored (``HookContext.finding``); tolerant of missing keys."""

    def text(key: str, default: str = "") -> str:
        value = data.get(key)
        return value if isinstance(value, str) else default

    endpoints: list[Address] = []
    for e in data.get("endpoints") or ():
        if isinstance(e, Mapping) and isinstance(e.get("port"), int):
            sni = e.get("sni")
            endpoints.append((str(e.get("address", "")), e["port"], sni if sni else None))
    if not endpoints:
        port = data.get("port")
        sni = data.get("sni")
        endpoints.append((text("address"), port if isinstance(port, int) else 0, sni or None))
    names = tuple(n for n in data.get("names") or () if isinstance(n, str))
    not_after = data.get("not_after")
    return Notice(
        hook=text("hook"),
        kind=text("kind", "finding"),
        severity=text("severity", "info"),
        message=text("message"),
        names=names,
        not_after=not_after if isinstance(not_after, str) else None,
        sha256=text("sha256"),
        endpoints=tuple(endpoints),
    )


def endpoint_text(endpoint: Address) -> str:
    """``address:port`` (``[v6]:port``), and `` (SNI name)`` when one was sent (raw text)."""
    address, port, sni = endpoint
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{port}" + (f" (SNI {sni})" if sni else "")


def listed(items: Sequence[str], limit: int) -> tuple[list[str], int]:
    """The first ``limit`` items and how many more there are."""
    return list(items[:limit]), max(len(items) - limit, 0)
