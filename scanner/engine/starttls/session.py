"""STARTTLS sessions: the bounded plaintext conversation before a TLS handshake.

Theory of operation
-------------------
A :class:`Session` wraps one connected socket for one protocol's preamble. It bounds the bytes:
it reads at most :data:`MAX_PREAMBLE_BYTES` from the server, in chunks of at most :data:`_CHUNK`,
and a server sending more (an endless greeting, a capability list that never ends) is cut off
with ``protocol_error``. Every protocol element is read through it: ``line`` (CRLF or LF),
``exactly`` (binary framing with its own length field) and ``until`` (XMPP, whose elements have
no line structure). Time is bounded by the engine's per-target cancel scope, not here.

A preamble (:data:`Preamble`) reads and writes through its session and raises :class:`Stop`
with the fault when the server declines; :func:`quote` sanitises and truncates the server's
reply for the fault's detail, since every byte is the server's. The preambles themselves are in
``protocols`` (line protocols and XMPP) and ``binary`` (LDAP, PostgreSQL, MySQL, RDP).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Awaitable, Callable
from typing import Final

from scanner.engine import net, tls
from scanner.models import Target

#: Bytes one preamble may read from the server, all replies together.
MAX_PREAMBLE_BYTES: Final = 16384
_CHUNK: Final = 4096
#: Characters of a server's reply a fault's detail quotes.
QUOTE_CHARS: Final = 200


class Stop(Exception):
    """Raised inside a preamble to end it with ``fault``."""

    def __init__(self, fault: tls.Fault) -> None:
        super().__init__(fault.detail)
        self.fault = fault


def quote(reply: bytes | bytearray, limit: int = QUOTE_CHARS) -> str:
    """A server's reply as one printable line: lines joined by `` / ``, every byte outside
    printable ASCII as ``\\xNN``, at most ``limit`` characters (``...`` marks a cut)."""
    lines = (line.strip() for line in bytes(reply[: limit * 4]).split(b"\n"))
    joined = b" / ".join(line for line in lines if line)
    text = "".join(chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}" for b in joined)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Session:
    """One preamble's view of the socket: buffered reads under the byte budget.

    ``protocol`` names the protocol in every fault's detail; ``sock`` is the connected socket.
    """

    __slots__ = ("_buf", "_left", "protocol", "sock")

    def __init__(self, sock: socket.socket, protocol: str) -> None:
        self.sock = sock
        self.protocol = protocol
        self._buf = bytearray()
        self._left = MAX_PREAMBLE_BYTES

    def declined(self, what: str, reply: bytes | bytearray = b"") -> Stop:
        """The server does not offer TLS here: ``starttls_refused`` quoting ``reply``."""
        detail = f"{self.protocol}: {what}" + (f": {quote(reply)}" if reply else "")
        return Stop(tls.fault(tls.STARTTLS_DECLINED, detail))

    async def _fill(self) -> None:
        if self._left <= 0:
            detail = (
                f"{self.protocol}: the server sent more than {MAX_PREAMBLE_BYTES} bytes "
                "before it was ready for TLS"
            )
            raise Stop(tls.fault(tls.PREAMBLE_LIMIT, detail))
        data = await net.receive(self.sock, min(_CHUNK, self._left))
        if not data:
            pending = f"; it had sent: {quote(self._buf)}" if self._buf else ""
            detail = f"{self.protocol}: connection closed by the peer during the preamble{pending}"
            raise Stop(tls.fault(tls.PEER_EOF, detail))
        self._left -= len(data)
        self._buf += data

    async def line(self) -> bytes:
        """The next line, without its line ending."""
        seen = 0
        while (end := self._buf.find(b"\n", seen)) < 0:
            seen = len(self._buf)
            await self._fill()
        line = bytes(self._buf[:end])
        del self._buf[: end + 1]
        return line.removesuffix(b"\r")

    async def exactly(self, size: int) -> bytes:
        """The next ``size`` bytes."""
        while len(self._buf) < size:
            await self._fill()
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    async def until(self, pattern: re.Pattern[bytes], overlap: int = 64) -> tuple[bytes, bytes]:
        """Read until ``pattern`` matches; return (everything before the match, the match), both
        consumed.

        A match is looked for only from ``overlap`` bytes before the newest chunk, so a server
        dripping one byte at a time costs linear work; ``pattern`` must match within that.
        """
        start = 0
        while (found := pattern.search(self._buf, start)) is None:
            start = max(0, len(self._buf) - overlap)
            await self._fill()
        data, match = bytes(self._buf[: found.start()]), bytes(found[0])
        del self._buf[: found.end()]  # after taking the match: it reads from the buffer
        return data, match

    def pending(self) -> bytes:
        """What has been read but not consumed (quoted in some details)."""
        return bytes(self._buf)

    async def send(self, data: bytes) -> None:
        await net.send_all(self.sock, data)


Preamble = Callable[[Session, Target], Awaitable[None]]
