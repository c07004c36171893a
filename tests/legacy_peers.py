"""A hand-framed legacy TLS server: for what no OpenSSL installed here can serve.

The system OpenSSL (3.0, Debian) is built without SSLv3, RC4 and 3DES, and the bundled one
offers none of them either, so a server that only has those is framed here by hand: it reads
the client's ClientHello record(s), and if the hello offers its one suite at a version it
speaks, answers with a real ServerHello, the Certificate message (the chain as DER), an
optional CertificateStatus and ServerHelloDone, split over records of ``fragment`` bytes as
real stacks split large flights. A hello without its suite is answered with a fatal
handshake_failure alert; one below its version, with protocol_version. It never completes a
key exchange: a scanner reading certificates stops before that. The parsing here is written
apart from the engine's reader on purpose (a shared bug would hide itself).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import trio

from tests.peers import Handler


def _u24(n: int) -> bytes:
    return n.to_bytes(3, "big")


def _handshake(kind: int, body: bytes) -> bytes:
    return bytes((kind,)) + _u24(len(body)) + body


async def _client_hello(stream: trio.SocketStream) -> tuple[int, set[int]] | None:
    """The client_version and offered suite codes of the first ClientHello (None: not one)."""
    buffer = b""
    messages = b""
    while True:
        while len(buffer) < 5 or len(buffer) < 5 + int.from_bytes(buffer[3:5], "big"):
            chunk = await stream.receive_some(65536)
            if not chunk:
                return None
            buffer += chunk
        length = int.from_bytes(buffer[3:5], "big")
        if buffer[0] != 22:
            return None
        messages += buffer[5 : 5 + length]
        buffer = buffer[5 + length :]
        if len(messages) >= 4 and len(messages) >= 4 + int.from_bytes(messages[1:4], "big"):
            break
    if messages[0] != 1:
        return None
    body = messages[4:]
    version = int.from_bytes(body[0:2], "big")
    at = 34 + 1 + body[34]
    count = int.from_bytes(body[at : at + 2], "big") // 2
    suites = {int.from_bytes(body[at + 2 + 2 * i : at + 4 + 2 * i], "big") for i in range(count)}
    return version, suites


def legacy_server(
    chain: Sequence[bytes],
    *,
    suite: int,
    version: int = 0x0303,
    staple: bytes | None = None,
    fragment: int = 4096,
    seen: list[tuple[int, set[int]]] | None = None,
) -> Handler:
    """A server speaking only ``version`` (0x0300 SSLv3 ... 0x0303 TLS 1.2) and ``suite``.

    ``seen`` collects each ClientHello's (version, suites), so a test can tell the connections
    apart.
    """

    async def handle(stream: trio.SocketStream) -> None:
        hello = await _client_hello(stream)
        if hello is None:
            return
        if seen is not None:
            seen.append(hello)
        client_version, offered = hello
        if client_version < version:
            await stream.send_all(b"\x15\x03\x00\x00\x02\x02\x46")  # protocol_version
            return
        if suite not in offered:
            await stream.send_all(b"\x15\x03\x01\x00\x02\x02\x28")  # handshake_failure
            return
        server_hello = (
            struct.pack("!H", version)
            + bytes(range(32))  # server random
            + b"\x20"
            + bytes(32)  # a session id
            + struct.pack("!H", suite)
            + b"\x00"  # null compression
        )
        certs = b"".join(_u24(len(der)) + der for der in chain)
        flight = _handshake(2, server_hello) + _handshake(11, _u24(len(certs)) + certs)
        if staple is not None:
            flight += _handshake(22, b"\x01" + _u24(len(staple)) + staple)
        flight += _handshake(14, b"")
        records = b""
        for at in range(0, len(flight), fragment):
            piece = flight[at : at + fragment]
            records += struct.pack("!BHH", 22, version, len(piece)) + piece
        await stream.send_all(records)
        while await stream.receive_some(4096):
            pass  # the client hangs up when it has the chain

    return handle
