"""ACME Renewal Information (RFC 9773): the renewal window a CA suggests for a certificate.

Theory of operation
-------------------
A CA that runs ARI lists ``renewalInfo`` in its ACME directory; ``GET renewalInfo/ID`` (no
account, no signature) answers ``{"suggestedWindow": {"start": ..., "end": ...},
"explanationURL": ...}`` with a ``Retry-After`` saying when to ask again. ``ID`` is the
certificate's RFC 9773 identifier (:mod:`exporters.hooks.ari_id`). :func:`fetch_window` does
the two requests with bounded answers (64 KB) under the caller's cancel scope; every field of
the answer is validated (:func:`parse_window`, pure) and a bad one is an :class:`AriError`, one
line. ``Retry-After`` is honoured within [:data:`MIN_RETRY`, :data:`MAX_RETRY`] (the RFC lets a
client clamp it); absent or unreadable, the next fetch is :data:`DEFAULT_RETRY` later.

Where it is used: the ``acme`` hook renews only inside the window (and sends ``replaces``), and
:func:`scan_windows` looks up the window of every discovered certificate whose issuer the
``[ari]`` map names, stores it, and raises ``ca_requests_early_renewal`` when the CA moves the
window before the point the policy would renew at: an early warning of a revocation for
certificates nobody here manages. Nothing is contacted that the config does not name.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Final

import httpx

from exporters.hooks.base import one_line
from scanner.errors import CertscanError

__all__ = ["AriError", "Window", "fetch_window", "parse_window", "retry_after"]

MAX_ANSWER: Final = 64 * 1024
DEFAULT_RETRY: Final = timedelta(hours=6)
MIN_RETRY: Final = timedelta(minutes=1)
MAX_RETRY: Final = timedelta(days=1)


class AriError(CertscanError):
    """The CA's renewalInfo could not be read (transport, status or a malformed answer)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """A suggested renewal window (UTC) and when to ask again."""

    start: datetime
    end: datetime
    explanation_url: str | None  # None when the CA gave none
    next_fetch_at: datetime


def _time(value: object, what: str) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise AriError(f"renewalInfo: {what} is not an RFC 3339 time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise AriError(f"renewalInfo: {what} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise AriError(f"renewalInfo: {what} has no time zone")
    return parsed.astimezone(UTC)


def retry_after(header: str | None, now: datetime) -> datetime:
    """When to fetch again: ``Retry-After`` (seconds or an HTTP date), clamped (pure)."""
    wait = DEFAULT_RETRY
    if header:
        text = header.strip()
        if text.isascii() and text.isdigit() and len(text) <= 10:
            wait = timedelta(seconds=int(text))
        else:
            try:
                wait = parsedate_to_datetime(text).astimezone(UTC) - now
            except (TypeError, ValueError, IndexError):
                wait = DEFAULT_RETRY
    return now + min(max(wait, MIN_RETRY), MAX_RETRY)


def parse_window(body: bytes, retry_header: str | None, now: datetime) -> Window:
    """Validate a renewalInfo answer (pure)."""
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise AriError("renewalInfo: the answer is not JSON") from None
    window = data.get("suggestedWindow") if isinstance(data, dict) else None
    if not isinstance(window, dict):
        raise AriError("renewalInfo: no suggestedWindow")
    start, end = _time(window.get("start"), "start"), _time(window.get("end"), "end")
    if end < start:
        raise AriError("renewalInfo: the window ends before it starts")
    url = data.get("explanationURL")
    if url is not None and (
        not isinstance(url, str) or len(url) > 2000 or not url.startswith("https://")
    ):
        url = None  # shown to people only; a bad one is dropped, not followed
    return Window(
        start=start, end=end, explanation_url=url, next_fetch_at=retry_after(retry_header, now)
    )


async def _get(client: httpx.AsyncClient, url: str) -> tuple[int, bytes, httpx.Headers]:
    received = bytearray()
    async with client.stream("GET", url) as response:
        async for chunk in response.aiter_raw():
            received += chunk
            if len(received) > MAX_ANSWER:
                raise AriError(f"renewalInfo: answer larger than {MAX_ANSWER} bytes")
    return response.status_code, bytes(received), response.headers


async def fetch_window(
    directory_url: str, cert_id: str, *, now: datetime, verify: str | bool = True
) -> Window | None:
    # ``verify``: False is never passed (the CA's TLS is always checked).
    """The window the CA at ``directory_url`` suggests for ``cert_id``; None when its directory
    lists no ``renewalInfo``. ``verify``: a CA bundle path, or True for the system's."""
    context = (
        ssl.create_default_context(cafile=verify)
        if isinstance(verify, str)
        else ssl.create_default_context()
    )
    try:
        async with httpx.AsyncClient(
            verify=context, follow_redirects=False, trust_env=False, timeout=10
        ) as client:
            status, body, _ = await _get(client, directory_url)
            if status != 200:
                raise AriError(f"ACME directory answered HTTP {status}")
            try:
                directory = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                raise AriError("the ACME directory is not JSON") from None
            base = directory.get("renewalInfo") if isinstance(directory, dict) else None
            if base is None:
                return None
            if not isinstance(base, str) or not base.startswith("https://"):
                raise AriError("the directory's renewalInfo is not an https:// URL")
            status, body, headers = await _get(client, base.rstrip("/") + "/" + cert_id)
    except httpx.HTTPError as exc:
        raise AriError(one_line(f"renewalInfo: {type(exc).__name__}: {exc}")) from None
    if status == 404:
        raise AriError("renewalInfo: the CA does not know this certificate (404)")
    if status != 200:
        raise AriError(f"renewalInfo answered HTTP {status}")
    return parse_window(body, headers.get("retry-after"), now)
