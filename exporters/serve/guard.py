"""Who may read the daemon: Host checking, an optional read token, and safe response headers.

Theory of operation
-------------------
The read API (the live report, ``/api/v1/*``, ``/metrics``) holds the whole inventory. Two
attacks reach it from a browser the operator opens, without any access to the network:

* **DNS rebinding**: a page on ``evil.example`` re-points that name to ``127.0.0.1`` and reads
  the daemon as "same origin". The browser still sends ``Host: evil.example``, so
  :class:`ReadGuard` answers 421 to any Host that is not an IP literal (an IP origin is the
  daemon's own, so rebinding gains nothing there) or an allowed name: the ``listen`` host when
  it is a name, ``localhost`` when ``listen`` is a loopback address, and ``serve.allowed_hosts``
  (``"*"`` allows any, for a proxy that checks names itself).
* **Framing and sniffing**: every response says ``X-Content-Type-Options: nosniff`` and
  ``Cache-Control: no-store``; HTML ones also ``Content-Security-Policy: frame-ancestors
  'none'``, ``X-Frame-Options: DENY`` and ``Referrer-Policy: no-referrer``.

With ``serve.read_token`` (or ``CERTSCAN_API_READ_TOKEN``) set, every GET and HEAD except
``/healthz`` and ``/readyz`` needs ``Authorization: Bearer <token>`` (the read token or the
admin ``serve.token``), which Prometheus sends with ``authorization: {credentials: ...}`` in a
scrape config; the comparison is constant-time. POSTs keep checking the admin token in their
handlers. :func:`exposure_warning` is the line the daemon logs when ``listen`` is not loopback
and no read token is set.

The guard reads its settings from the :class:`~exporters.serve.api.ApiState` on every request,
so a SIGHUP reload takes effect at once. ``allowed_hosts`` ``None`` (the default of an
``ApiState`` built by hand, as tests do) skips the Host check; the daemon always sets it.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

__all__ = [
    "GuardSettings",
    "ReadGuard",
    "allowed_host_names",
    "exposure_warning",
    "host_allowed",
    "is_loopback",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Probes that must answer without a token (load balancers, systemd, kubelet).
OPEN_PATHS = frozenset({"/healthz", "/readyz"})


class GuardSettings(Protocol):
    """What the guard reads on each request (an ``ApiState`` has these)."""

    token: str | None
    read_token: str | None
    allowed_hosts: frozenset[str] | None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a listen host) is a loopback address or ``localhost``."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_host_names(listen_host: str, configured: tuple[str, ...]) -> frozenset[str]:
    """The Host names to accept: the listen host if it is a name, ``localhost`` for a loopback
    listen, and the configured ones (lower case, no trailing dot)."""
    names = {n.strip().lower().rstrip(".") for n in configured if n.strip()}
    try:
        ipaddress.ip_address(listen_host.strip("[]"))
    except ValueError:
        names.add(listen_host.lower().rstrip("."))
    if is_loopback(listen_host):
        names.add("localhost")
    return frozenset(names)


def _host_only(header: str) -> str:
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    name, sep, port = header.rpartition(":")
    return (name if sep and port.isdigit() else header).rstrip(".")


def host_allowed(header: str | None, allowed: frozenset[str]) -> bool:
    """Whether a request with ``Host: header`` may be answered (module docstring)."""
    if not header:
        return False
    host = _host_only(header)
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    return "*" in allowed or host in allowed


def exposure_warning(listen_host: str, read_token: str | None) -> str | None:
    """The warning for a read API open to the network, else None."""
    if read_token or is_loopback(listen_host):
        return None
    return (
        f"serve.listen {listen_host} is not a loopback address and no serve.read_token is set: "
        "anyone who can reach it reads the whole inventory (set serve.read_token or "
        "CERTSCAN_API_READ_TOKEN, and give Prometheus the token)"
    )


def _bearer(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" else None
    return None


def _header(headers: list[tuple[bytes, bytes]], wanted: bytes) -> str | None:
    for name, value in headers:
        if name == wanted:
            return value.decode("latin-1")
    return None


class ReadGuard:
    """ASGI middleware applying the module docstring's rules in front of the app."""

    def __init__(self, app: ASGIApp, state: GuardSettings) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or [])
        allowed = self.state.allowed_hosts
        if allowed is not None and not host_allowed(_header(headers, b"host"), allowed):
            await _refuse(send, 421, "this server does not answer for that Host name")
            return
        read_token = self.state.read_token
        path = scope.get("path", "")
        if read_token and scope.get("method") in ("GET", "HEAD") and path not in OPEN_PATHS:
            given = _bearer(headers) or b""
            tokens = [read_token] + ([self.state.token] if self.state.token else [])
            if not any(hmac.compare_digest(given, t.encode()) for t in tokens):
                await _refuse(send, 401, "missing or wrong bearer token", bearer=True)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"
                ]
                out += [(b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store")]
                content_type = dict(out).get(b"content-type", b"")
                if content_type.startswith(b"text/html"):
                    out += [
                        (b"content-security-policy", b"frame-ancestors 'none'"),
                        (b"x-frame-options", b"DENY"),
                        (b"referrer-policy", b"no-referrer"),
                    ]
                message = {**message, "headers": out}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _refuse(send: Send, status: int, message: str, *, bearer: bool = False) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"cache-control", b"no-store"),
    ]
    if bearer:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
