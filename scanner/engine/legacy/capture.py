"""The one connection of a legacy capture: send the hand-built hello, read the server's flight.

The caller (``scanner.engine.crew``) connects (and runs the STARTTLS preamble) under its cancel
scopes; :func:`capture` only talks. What comes back is what a handshake returns, a
``tls.Negotiated`` (with ``legacy_capture`` set) or a ``tls.Fault``, so the rest of the engine
needs no new case. No OpenSSL state is made, so no handshake slot is taken.
"""

from __future__ import annotations

import os
import socket
from typing import Final

from scanner.engine import net, tls
from scanner.engine.legacy import records
from scanner.engine.legacy.hello import client_hello
from scanner.engine.legacy.kex import key_exchange
from scanner.engine.legacy.records import ServerAlert, ServerFlight
from scanner.engine.legacy.suites import suite_name
from scanner.models import FailureKind

_RECV_CHUNK: Final = 16384

#: The failures that earn a legacy capture: the server refused every suite, group or version
#: our TLS library offers (handshake_failure, protocol_version, insufficient_security), hung up
#: or reset on our hello, or chose a version OpenSSL will not speak (an SSLv3-only server).
RETRY_ALERTS: Final = frozenset({40, 70, 71})
RETRY_REASONS: Final = ("unsupported protocol", "no shared cipher", "wrong curve")


def worth_trying(found: tls.Fault) -> bool:
    """Whether ``found`` (the normal handshake's fault) may hide a chain a legacy hello gets."""
    match found.kind:
        case FailureKind.TLS_ALERT:
            return found.alert in RETRY_ALERTS
        case FailureKind.RESET:
            return True
        case FailureKind.PROTOCOL_ERROR:
            detail = found.detail.lower()
            return any(reason in detail for reason in RETRY_REASONS)
        case _:
            return False


def _negotiated(flight: ServerFlight) -> tls.Negotiated:
    cipher = suite_name(flight.cipher_suite)
    group, scheme = None, None
    if flight.key_exchange is not None:
        group, scheme = key_exchange(flight.key_exchange, cipher, flight.version)
    return tls.Negotiated(
        chain=flight.chain,
        tls_version=records.VERSIONS[flight.version],
        cipher=cipher,
        group=group,
        signature_scheme=scheme,
        alpn=None,
        ocsp_staple=flight.ocsp_staple,
        client_cert_requested=False,
        legacy_capture=True,
    )


def signature_scheme(flight: bytes, cipher: str, version: str) -> str | None:
    """The signature scheme in the ServerKeyExchange of ``flight`` (the clear bytes a normal
    TLS 1.2 handshake received; ``cipher`` as OpenSSL names it); ``None`` when it holds none."""
    number = next((n for n, name in records.VERSIONS.items() if name == version), None)
    body = records.server_key_exchange(flight) if number is not None else None
    return None if body is None or number is None else key_exchange(body, cipher, number)[1]


def _answer(flight: ServerFlight | None, detail: str) -> tls.Negotiated | tls.Fault:
    if flight is None or not flight.chain:
        return tls.fault(tls.PEER_EOF, detail)
    return _negotiated(flight)


async def capture(
    sock: socket.socket, sni: bytes | None, max_bytes: int
) -> tls.Negotiated | tls.Fault:
    """Send the legacy hello on ``sock`` and read the chain from the server's flight.

    At most ``max_bytes`` are read (``chain_too_large`` past them). A flight without a
    certificate (an anonymous suite) is a fault: there is nothing to inventory.
    """
    received = b""
    try:
        await net.send_all(sock, client_hello(os.urandom(32), sni))
        while True:
            data = await net.receive(sock, min(_RECV_CHUNK, max_bytes - len(received) + 1))
            if not data:
                detail = f"legacy capture: connection closed after {len(received)} bytes"
                return _answer(records.flight_so_far(received), detail)
            received += data
            if len(received) > max_bytes:
                return tls.fault(
                    tls.READ_LIMIT, f"server sent more than {max_bytes} bytes in the handshake"
                )
            answer = records.read_flight(received)
            match answer:
                case ServerFlight():
                    return _answer(answer, "legacy capture: the server sent no certificate")
                case ServerAlert(description=code):
                    alert = tls.fault(tls.ALERT_RECEIVED, tls.alert_name(code))
                    return tls.Fault(kind=alert.kind, detail=alert.detail, alert=code)
                case _:
                    continue
    except records.RecordError as exc:
        return tls.fault("", f"legacy capture: {exc}")  # a protocol error
    except OSError as exc:
        classified = tls.os_fault(exc)
        if classified is None:
            raise
        return classified
