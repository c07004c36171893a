"""The sockets of a SYN scan: raw IPv4/IPv6 sockets, the reserved source port, route lookups.

Raw ``IPPROTO_TCP`` sockets, without ``IP_HDRINCL`` (the kernel writes the IP header), send the
SYNs and receive every TCP packet of the host; a classic BPF filter attached to each keeps only
segments to our source port. That port is one the kernel gave a plain TCP socket which stays
bound (never listening) for the whole scan, so no connect() of the TLS phase can pick it, and
the kernel, holding no socket for the SYN-ACKs that reach it, answers each with a RST. Our own
address toward each destination is what the kernel's routing picks (a UDP ``connect``: a route
lookup, nothing is sent), cached per address.

Raw sockets need root or ``CAP_NET_RAW``: :func:`raw_privilege` is the check.
"""

from __future__ import annotations

import contextlib
import ctypes
import socket
import struct
from typing import Final

from scanner.engine.syn import packet

_SOURCES: Final = 65_536  # source addresses remembered (a /16 is looked up once)
_BUFFER: Final = 32 << 20
_RECEIVE: Final = 128  # bytes read of each packet: the IP and TCP headers of a reply


def raw_privilege() -> bool:
    """Whether this process may open raw sockets (root, or ``CAP_NET_RAW``)."""
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    except OSError:
        return False
    sock.close()
    return True


class Family:
    """The sockets of one address family: raw (send and receive), the reserved source port,
    and a UDP socket for route lookups."""

    def __init__(self, family: socket.AddressFamily) -> None:
        self.family = family
        self.v4 = family == socket.AF_INET
        #: The receive loop's buffer, reused for every packet (a SYN reply is 40-60 bytes).
        self.buffer = bytearray(_RECEIVE)
        self.closing: list[socket.socket] = []
        try:
            self.raw = self._keep(socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_TCP))
            self.raw.setblocking(False)
            _big_buffers(self.raw)
            if family == socket.AF_INET6:
                self.raw.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            self.reserve = self._keep(socket.socket(family, socket.SOCK_STREAM))
            self.reserve.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))  # noqa: S104 - never listens
            self.port: int = self.reserve.getsockname()[1]
            _only_to_port(self.raw, self.port, ip_header=family == socket.AF_INET)
            self.route = self._keep(socket.socket(family, socket.SOCK_DGRAM))
        except BaseException:
            self.close()
            raise
        self.sources: dict[str, bytes | None] = {}
        self.templates: dict[bytes, packet.SynTemplate] = {}

    def template(self, local: bytes) -> packet.SynTemplate:
        """The SYN builder for our address ``local`` (one per local address, usually one)."""
        found = self.templates.get(local)
        if found is None:
            found = self.templates[local] = packet.SynTemplate(local, self.port)
        return found

    def _keep(self, sock: socket.socket) -> socket.socket:
        self.closing.append(sock)
        return sock

    def source(self, address: str) -> bytes | None:
        """Our address toward ``address`` as the kernel's routing picks it; None: no route."""
        found = self.sources.get(address, b"")
        if found != b"":
            return found
        try:
            self.route.connect((address, 9))  # UDP: a route lookup, nothing is sent
            found = socket.inet_pton(self.family, self.route.getsockname()[0].split("%")[0])
        except OSError:
            found = None
        if len(self.sources) >= _SOURCES:
            del self.sources[next(iter(self.sources))]
        self.sources[address] = found
        return found

    def close(self) -> None:
        for sock in self.closing:
            sock.close()


_SO_SNDBUFFORCE: Final = 32
_SO_RCVBUFFORCE: Final = 33


def _big_buffers(sock: socket.socket) -> None:
    """:data:`_BUFFER` bytes each way. Replies come in bursts at the full rate: a receive
    buffer of the default size (``net.core.rmem_max``, about 200 KB) drops them and the scan
    then retries targets that did answer. Past that limit only with ``CAP_NET_ADMIN`` (root):
    with ``CAP_NET_RAW`` alone, raise ``net.core.rmem_max`` or lower ``--rate``."""
    for force, plain in ((_SO_SNDBUFFORCE, socket.SO_SNDBUF), (_SO_RCVBUFFORCE, socket.SO_RCVBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, _BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, _BUFFER)


_SO_ATTACH_FILTER: Final = 26
_BPF: Final = struct.Struct("HBBI")  # one classic BPF instruction: code, jt, jf, k


def _only_to_port(sock: socket.socket, port: int, *, ip_header: bool) -> None:
    """Have the kernel hand ``sock`` only TCP segments to ``port`` (a classic BPF filter): a raw
    TCP socket otherwise receives a copy of every TCP packet of the host. Where the filter
    cannot be attached the receiver's own port check does the same, slower."""
    program = []
    if ip_header:  # X = IPv4 header length, then the destination port at X + 2
        program += [(0xB1, 0, 0, 0), (0x48, 0, 0, 2)]  # ldx 4*([0]&0xf); ldh [x+2]
    else:
        program += [(0x28, 0, 0, 2)]  # ldh [2]
    program += [(0x15, 0, 1, port), (0x06, 0, 0, 0xFFFF), (0x06, 0, 0, 0)]  # jeq; ret; ret
    code = ctypes.create_string_buffer(b"".join(_BPF.pack(*op) for op in program))
    fprog = struct.pack("HL", len(program), ctypes.addressof(code))
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)


class RawSockets:
    """The raw IPv4 and IPv6 sockets of one scan; ``v6`` is None where IPv6 is off. Opening
    raises ``PermissionError`` without the privilege (see :func:`raw_privilege`)."""

    def __init__(self) -> None:
        self.v4 = Family(socket.AF_INET)
        try:
            self.v6: Family | None = Family(socket.AF_INET6)
        except PermissionError:
            self.v4.close()
            raise
        except OSError:
            self.v6 = None

    def family(self, address: str) -> Family | None:
        return self.v6 if ":" in address else self.v4

    def close(self) -> None:
        self.v4.close()
        if self.v6 is not None:
            self.v6.close()

    def __enter__(self) -> RawSockets:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
