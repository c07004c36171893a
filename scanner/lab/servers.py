"""The built-in lab: loopback servers that show every kind of certificate and failure.

Theory of operation
-------------------
:func:`run_lab` builds the catalogue (:mod:`scanner.lab.catalogue`: fresh keys, one throwaway root,
consecutive addresses in 127.0.0.0/8), turns each TLS endpoint into a stdlib ``ssl`` server
context, binds one trio listener per endpoint and reports the running :class:`Lab`, with the
real bound ports, through ``task_status``. It then serves until cancelled.

Key generation and context loading are blocking (the stdlib loads certificates only from
files, so the PEM is written to a private temporary directory that is removed at once); both
run in a worker thread so the event loop stays responsive.

Each accepted connection runs in its own task under a time bound (``CONNECTION_SECONDS``, or
``HANG_SECONDS`` for the endpoint that never answers), and at most
``MAX_CONNECTIONS_PER_ENDPOINT`` run at once per endpoint: excess connections are closed at
once. So the lab never accumulates stuck tasks, whatever its clients do. Scanners hang up in
the middle of handshakes as a matter of course; those errors are swallowed without a word.

Legacy crypto (RSA 1024, SHA-1 signatures, TLS 1.0) is refused by the default security level of
the system OpenSSL, so those endpoints alone run at ``@SECLEVEL=0``.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ssl
import tempfile
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import trio
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from scanner.errors import OperationalError, UsageError
from scanner.lab.catalogue import (
    BANNER,
    DEFAULT_BASE_ADDRESS,
    DEFAULT_PORT,
    Lab,
    LabEndpoint,
    Service,
    build_lab,
)

__all__ = ["Lab", "LabEndpoint", "Service", "describe", "run_lab"]

CONNECTION_SECONDS = 10.0
HANG_SECONDS = 60.0
MAX_CONNECTIONS_PER_ENDPOINT = 64
_READ_SIZE = 4096

_Serve = Callable[[trio.SocketStream, LabEndpoint, ssl.SSLContext | None], Awaitable[None]]


def describe(lab: Lab) -> list[tuple[str, str, str]]:
    """One ``(address:port, name, description)`` row per endpoint, in address order."""
    return [(f"{e.address}:{e.port}", e.name, e.description) for e in lab.endpoints]


async def run_lab(
    *,
    base_address: str = DEFAULT_BASE_ADDRESS,
    port: int = DEFAULT_PORT,
    task_status: trio.TaskStatus[Lab] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the lab until cancelled: ``lab = await nursery.start(run_lab, port=0)``.

    ``port`` 0 lets each endpoint pick a free port. Raises :class:`UsageError` for a base
    address or port the lab cannot use and :class:`OperationalError` when a listener cannot
    be bound (port busy, address not configured, permission denied).
    """
    build = functools.partial(build_lab, base_address=base_address, port=port, now=_now())
    try:
        catalogue = await trio.to_thread.run_sync(build)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    contexts = await trio.to_thread.run_sync(_server_contexts, catalogue)
    listeners: list[trio.SocketListener] = []
    try:
        for endpoint in catalogue.endpoints:
            listeners.append(await _listen(endpoint))
        bound = tuple(
            replace(e, port=listener.socket.getsockname()[1])
            for e, listener in zip(catalogue.endpoints, listeners, strict=True)
        )
        lab = Lab(endpoints=bound, ca=catalogue.ca)
        async with trio.open_nursery() as nursery:
            for endpoint, listener in zip(lab.endpoints, listeners, strict=True):
                handler = functools.partial(
                    _handle,
                    endpoint=endpoint,
                    context=contexts.get(endpoint.name),
                    limiter=trio.CapacityLimiter(MAX_CONNECTIONS_PER_ENDPOINT),
                )
                nursery.start_soon(trio.serve_listeners, handler, [listener])
            task_status.started(lab)
    finally:
        for listener in listeners:
            await trio.aclose_forcefully(listener)


def _now() -> datetime:
    return datetime.now(UTC)


async def _listen(endpoint: LabEndpoint) -> trio.SocketListener:
    where = f"{endpoint.address}:{endpoint.port}"
    try:
        (listener,) = await trio.open_tcp_listeners(endpoint.port, host=endpoint.address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            message = (
                f"{where} is already in use — is another `certscan lab up` running? use --port"
            )
        else:
            message = f"cannot listen on {where}: {exc.strerror or exc}"
        raise OperationalError(message) from exc
    return listener


# --- TLS server contexts (blocking: run in a worker thread) -----------------------------------


def _needs_legacy_crypto(endpoint: LabEndpoint) -> bool:
    """True when the default OpenSSL security level would refuse to serve this endpoint."""
    if endpoint.service is Service.TLS10_ONLY:
        return True
    for issued in endpoint.chain:
        key = issued.cert.public_key()
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
            return True
        if isinstance(issued.cert.signature_hash_algorithm, hashes.SHA1):
            return True
    return False


def _server_contexts(lab: Lab) -> dict[str, ssl.SSLContext]:
    """A server context per TLS endpoint, by endpoint name."""
    ca_pem = lab.ca.cert_pem.decode("ascii")
    contexts: dict[str, ssl.SSLContext] = {}
    with tempfile.TemporaryDirectory(prefix="certscan-lab-") as directory:
        for endpoint in lab.endpoints:
            if endpoint.chain:
                pem = Path(directory) / f"{endpoint.name}.pem"
                pem.write_bytes(
                    b"".join(c.cert_pem for c in endpoint.chain) + endpoint.chain[0].key_pem
                )
                contexts[endpoint.name] = context = _server_context(endpoint, pem, ca_pem)
                if endpoint.alt_chain:  # a second certificate, of another key type
                    alt = Path(directory) / f"{endpoint.name}-alt.pem"
                    alt.write_bytes(
                        b"".join(c.cert_pem for c in endpoint.alt_chain)
                        + endpoint.alt_chain[0].key_pem
                    )
                    context.load_cert_chain(alt)
    return contexts


def _server_context(endpoint: LabEndpoint, pem: Path, ca_pem: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if _needs_legacy_crypto(endpoint):
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    if endpoint.service is Service.TLS10_ONLY:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0 is the point here
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1
    context.load_cert_chain(pem)
    context.set_alpn_protocols(["http/1.1"])
    if endpoint.service is Service.CLIENT_CERT:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=ca_pem)
    return context


# --- connection handlers ----------------------------------------------------------------------


async def _handle(
    stream: trio.SocketStream,
    *,
    endpoint: LabEndpoint,
    context: ssl.SSLContext | None,
    limiter: trio.CapacityLimiter,
) -> None:
    try:
        limiter.acquire_nowait()
    except trio.WouldBlock:
        await trio.aclose_forcefully(stream)
        return
    bound = HANG_SECONDS if endpoint.service is Service.HANG else CONNECTION_SECONDS
    try:
        with trio.move_on_after(bound):
            await _SERVE[endpoint.service](stream, endpoint, context)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass  # the client hung up or spoke nonsense: normal for scanners
    finally:
        limiter.release()
        await trio.aclose_forcefully(stream)


async def _serve_tls(
    stream: trio.SocketStream, endpoint: LabEndpoint, context: ssl.SSLContext | None
) -> None:
    assert context is not None
    tls = trio.SSLStream(stream, context, server_side=True)
    try:
        await tls.do_handshake()
        if await tls.receive_some(_READ_SIZE):
            await tls.send_all(_http_response(endpoint))
    finally:
        with contextlib.suppress(trio.BrokenResourceError, OSError):
            await tls.aclose()


def _http_response(endpoint: LabEndpoint) -> bytes:
    body = f"certscan lab: {endpoint.name}: {endpoint.description}\n".encode()
    head = (
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


async def _serve_banner(
    stream: trio.SocketStream, endpoint: LabEndpoint, context: ssl.SSLContext | None
) -> None:
    await stream.send_all(BANNER)
    await _drain(stream)


async def _serve_hang(
    stream: trio.SocketStream, endpoint: LabEndpoint, context: ssl.SSLContext | None
) -> None:
    await _drain(stream)


async def _drain(stream: trio.SocketStream) -> None:
    """Read and discard until the peer closes (closing with unread data would send a RST)."""
    while await stream.receive_some(_READ_SIZE):
        pass


_SERVE: dict[Service, _Serve] = {
    Service.TLS: _serve_tls,
    Service.TLS10_ONLY: _serve_tls,
    Service.CLIENT_CERT: _serve_tls,
    Service.BANNER: _serve_banner,
    Service.HANG: _serve_hang,
}
