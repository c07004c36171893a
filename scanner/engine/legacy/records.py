"""Reading a server's first flight from the bytes received so far (pure).

:func:`read_flight` is called with everything received up to now and answers one of three
things: :data:`INCOMPLETE` (more bytes are needed), a :class:`ServerFlight` (ServerHello and
what followed up to ServerHelloDone, or the first message after the certificates), or a
:class:`ServerAlert`. Input that cannot be a server's answer to our hello raises
:class:`RecordError`, the only exception this module raises, with a one-line reason.

Every length read from the wire is checked before it is used: a record's against the bytes
present and against the TLS bound (2^14 + 2048 for a ciphertext record; a plaintext one is
never larger), a handshake message's against the reassembled handshake bytes, and each vector
inside ServerHello, Certificate and CertificateStatus against the message that holds it.
Slices are taken only within those bounds, so no input reads past its end. Work is linear in
the input; the caller bounds the input (``max_chain_bytes``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: Record content types.
_CHANGE_CIPHER_SPEC: Final = 20
_ALERT: Final = 21
_HANDSHAKE: Final = 22
#: Handshake message types.
_SERVER_HELLO: Final = 2
_CERTIFICATE: Final = 11
_CERTIFICATE_STATUS: Final = 22
_SERVER_KEY_EXCHANGE: Final = 12
_SERVER_HELLO_DONE: Final = 14
#: The largest record body TLS allows (RFC 5246 6.2.3: 2^14 + 2048).
MAX_RECORD: Final = (1 << 14) + 2048
#: The versions a server may choose: SSLv3 (0x0300) to TLS 1.2 (0x0303).
VERSIONS: Final[dict[int, str]] = {
    0x0300: "SSLv3",
    0x0301: "TLSv1",
    0x0302: "TLSv1.1",
    0x0303: "TLSv1.2",
}


class RecordError(ValueError):
    """The bytes cannot be a server's first flight (the message says why)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerFlight:
    """What a server sent in clear after our hello.

    ``version`` is the ServerHello's version (a key of :data:`VERSIONS`), ``cipher_suite`` the
    code it chose. ``chain`` is the Certificate message's list, DER, in the order sent (empty
    when the server sent no Certificate, as an anonymous suite does). ``ocsp_staple`` is the
    CertificateStatus OCSP response, ``None`` when none came.
    """

    version: int
    cipher_suite: int
    chain: tuple[bytes, ...]
    ocsp_staple: bytes | None = None
    #: The ServerKeyExchange body when one followed the certificates (``None``: none, as with
    #: static RSA); read by :mod:`.kex`.
    key_exchange: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerAlert:
    """The server answered with an alert record (``level`` 1 warning, 2 fatal)."""

    level: int
    description: int


class _Incomplete:
    __slots__ = ()

    def __repr__(self) -> str:
        return "INCOMPLETE"


#: More bytes are needed before the flight can be read.
INCOMPLETE: Final = _Incomplete()

Answer = ServerFlight | ServerAlert | _Incomplete


def _u24(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 3], "big")


def _records(data: bytes) -> tuple[bytes, ServerAlert | None]:
    """The handshake bytes of every whole record in ``data`` (a partial last record waits for
    more), and the first alert, which ends the reading."""
    handshake = bytearray()
    at = 0
    while at < len(data):
        if len(data) - at < 5:
            return bytes(handshake), None
        kind, major, minor = data[at], data[at + 1], data[at + 2]
        length = int.from_bytes(data[at + 3 : at + 5], "big")
        if major != 3 or minor > 3:
            raise RecordError(f"record version {major}.{minor} is not SSLv3 to TLS 1.2")
        if length > MAX_RECORD:
            raise RecordError(f"a record of {length} bytes is over the TLS bound")
        if len(data) - at - 5 < length:
            return bytes(handshake), None
        body = data[at + 5 : at + 5 + length]
        at += 5 + length
        if kind == _ALERT:
            if length < 2:
                raise RecordError(f"an alert record of {length} bytes")
            return bytes(handshake), ServerAlert(level=body[0], description=body[1])
        if kind == _HANDSHAKE:
            if not length:
                raise RecordError("an empty handshake record")
            handshake += body
        elif kind == _CHANGE_CIPHER_SPEC:
            raise RecordError("ChangeCipherSpec before the server's certificates")
        else:
            raise RecordError(f"record type {kind} before the server's certificates")
    return bytes(handshake), None


def _server_hello(body: bytes) -> tuple[int, int]:
    # version (2), random (32), session_id <0..32>, cipher_suite (2), compression (1), ...
    if len(body) < 35:
        raise RecordError(f"a ServerHello of {len(body)} bytes")
    version = int.from_bytes(body[0:2], "big")
    if version not in VERSIONS:
        raise RecordError(f"ServerHello version 0x{version:04x} is not SSLv3 to TLS 1.2")
    session = body[34]
    if session > 32:
        raise RecordError(f"a ServerHello session id of {session} bytes")
    at = 35 + session
    if len(body) < at + 3:
        raise RecordError("a ServerHello cut short before its cipher suite")
    return version, int.from_bytes(body[at : at + 2], "big")


def _certificates(body: bytes) -> tuple[bytes, ...]:
    if len(body) < 3:
        raise RecordError(f"a Certificate message of {len(body)} bytes")
    total = _u24(body, 0)
    if total != len(body) - 3:
        raise RecordError(f"a certificate list of {total} bytes in a {len(body)}-byte message")
    chain: list[bytes] = []
    at = 3
    while at < len(body):
        if len(body) - at < 3:
            raise RecordError("a certificate length cut short")
        size = _u24(body, at)
        if not size or size > len(body) - at - 3:
            raise RecordError(f"a certificate of {size} bytes where {len(body) - at - 3} remain")
        chain.append(body[at + 3 : at + 3 + size])
        at += 3 + size
    return tuple(chain)


def _status(body: bytes) -> bytes | None:
    # status_type (1: ocsp), response <1..2^24-1>
    if len(body) < 4:
        raise RecordError(f"a CertificateStatus of {len(body)} bytes")
    size = _u24(body, 1)
    if size != len(body) - 4:
        raise RecordError(f"an OCSP response of {size} bytes in a {len(body)}-byte message")
    return body[4:] if body[0] == 1 and size else None


@dataclass(slots=True)
class _Seen:
    """The messages read so far: ServerHello (version, suite), chain, staple, key exchange,
    and whether the flight is past the certificates (``done``)."""

    hello: tuple[int, int] | None = None
    chain: tuple[bytes, ...] = ()
    staple: bytes | None = None
    key_exchange: bytes | None = None
    done: bool = False

    def flight(self) -> ServerFlight | None:
        if self.hello is None:
            return None
        version, suite = self.hello
        return ServerFlight(
            version=version,
            cipher_suite=suite,
            chain=self.chain,
            ocsp_staple=self.staple,
            key_exchange=self.key_exchange,
        )


def _messages(handshake: bytes) -> _Seen:
    seen = _Seen()
    at = 0
    while len(handshake) - at >= 4:
        kind, size = handshake[at], _u24(handshake, at + 1)
        if size > len(handshake) - at - 4:
            break  # the rest of this message is in records still to come
        body = handshake[at + 4 : at + 4 + size]
        at += 4 + size
        if seen.hello is None:
            if kind != _SERVER_HELLO:
                raise RecordError(f"handshake message {kind} before the ServerHello")
            seen.hello = _server_hello(body)
        elif kind == _CERTIFICATE and not seen.chain:
            seen.chain = _certificates(body)
        elif kind == _CERTIFICATE_STATUS and seen.staple is None:
            seen.staple = _status(body)
        elif kind == _SERVER_HELLO:
            raise RecordError("a second ServerHello")
        else:  # ServerKeyExchange, CertificateRequest, ServerHelloDone: the certificates are in
            if kind == _SERVER_KEY_EXCHANGE:
                seen.key_exchange = body
            seen.done = True
            return seen
    return seen


def read_flight(data: bytes) -> Answer:
    """Read the server's first flight from ``data`` (every byte received so far)."""
    handshake, alert = _records(data)
    seen = _messages(handshake)
    flight = seen.flight()
    if flight is not None and (seen.done or (alert is not None and seen.chain)):
        # Past the certificates, or the chain came whole and then the server gave up.
        return flight
    return INCOMPLETE if alert is None else alert


def flight_so_far(data: bytes) -> ServerFlight | None:
    """At the end of the stream (or the byte bound): the flight if a ServerHello and a whole
    Certificate came, else ``None``. Raises :class:`RecordError` like :func:`read_flight`."""
    handshake, _alert = _records(data)
    seen = _messages(handshake)
    return seen.flight() if seen.chain else None


def server_key_exchange(data: bytes) -> bytes | None:
    """The ServerKeyExchange body in the clear start of a TLS 1.2 (or older) server stream, as a
    normal handshake received it; ``None`` when there is none (static RSA, TLS 1.3) or when the
    bytes do not read as records. Tolerant where :func:`read_flight` is strict: it never
    raises, and it stops at the first record that is not a handshake (ChangeCipherSpec)."""
    gathered = bytearray()
    at = 0
    while len(data) - at >= 5 and data[at] == _HANDSHAKE:
        length = int.from_bytes(data[at + 3 : at + 5], "big")
        if length > MAX_RECORD or len(data) - at - 5 < length:
            break
        gathered += data[at + 5 : at + 5 + length]
        at += 5 + length
    handshake = bytes(gathered)
    at = 0
    while len(handshake) - at >= 4:
        kind, size = handshake[at], _u24(handshake, at + 1)
        if size > len(handshake) - at - 4:
            return None
        if kind == _SERVER_KEY_EXCHANGE:
            return handshake[at + 4 : at + 4 + size]
        if kind == _SERVER_HELLO_DONE:
            return None
        at += 4 + size
    return None
