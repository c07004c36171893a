"""TCP SYN probes and their replies as bytes: the builder, the parser, the Internet checksum.

Pure: no sockets here. The raw sockets of :mod:`scanner.engine.syn.scan` are
``IPPROTO_TCP`` sockets without ``IP_HDRINCL``, so the kernel writes the IP header of what we
send and we build only the TCP header (with its checksum over the IPv4 or IPv6 pseudo-header).
What we receive on IPv4 starts with the IP header (:func:`parse_ipv4`); on IPv6 the kernel
strips it and hands the addresses apart (:func:`parse_tcp`).

Every byte of a reply may be crafted. The parsers check each length before reading, accept
only what a SYN reply can be (an unfragmented IPv4 packet carrying TCP, a TCP header whose
data offset fits the bytes received) and return ``None`` for anything else; they never raise
on bad input. The TCP checksum of a reply is not verified: on loopback the kernel leaves it
partial (checksum offload), and the cookie in the acknowledgement number
(:mod:`scanner.engine.syn.cookie`) is what tells a real reply from a forged one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

#: TCP flag bits.
FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
PSH: Final = 0x08
ACK: Final = 0x10

#: The window our SYNs advertise, and the MSS option they carry (kind 2, length 4).
WINDOW: Final = 64240
MSS: Final = 1460
#: A SYN: 20 bytes of header and one 4-byte option.
SYN_LENGTH: Final = 24
_PROTO_TCP: Final = 6

_TCP: Final = struct.Struct("!HHIIBBHHH")  # ports, seq, ack, offset, flags, window, sum, urg
_MSS_OPTION: Final = struct.pack("!BBH", 2, 4, MSS)


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``: the ones' complement of the ones'
    complement sum of its 16-bit big-endian words, an odd last byte padded with zero."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pseudo_header(source: bytes, destination: bytes, length: int) -> bytes:
    """The pseudo-header a TCP checksum covers: RFC 793 for 4-byte addresses, RFC 8200 for
    16-byte ones. ``ValueError`` for other address lengths or mixed families."""
    if len(source) != len(destination) or len(source) not in (4, 16):
        raise ValueError("addresses must both be 4 or both be 16 bytes")
    if not 0 <= length <= 0xFFFF:
        raise ValueError(f"TCP length out of range: {length}")
    if len(source) == 4:
        return source + destination + struct.pack("!BBH", 0, _PROTO_TCP, length)
    return source + destination + struct.pack("!IxxxB", length, _PROTO_TCP)


def build_syn(
    source: bytes, source_port: int, destination: bytes, destination_port: int, seq: int
) -> bytes:
    """The TCP header of a SYN from ``source:source_port`` to ``destination:destination_port``
    (packed addresses, both IPv4 or both IPv6) with sequence number ``seq``, an MSS option and a
    valid checksum. ``ValueError`` for a port or sequence number out of range."""
    for port in (source_port, destination_port):
        if not 0 < port <= 0xFFFF:
            raise ValueError(f"port out of range: {port}")
    if not 0 <= seq <= 0xFFFFFFFF:
        raise ValueError(f"sequence number out of range: {seq}")
    header = _TCP.pack(
        source_port, destination_port, seq, 0, (SYN_LENGTH // 4) << 4, SYN, WINDOW, 0, 0
    )
    segment = header + _MSS_OPTION
    total = checksum(pseudo_header(source, destination, SYN_LENGTH) + segment)
    return segment[:16] + struct.pack("!H", total) + segment[18:]


class SynTemplate:
    """:func:`build_syn` for one source address and port, faster: the checksum of everything
    but the destination and the sequence number is summed once, so a SYN costs one pack and a
    few additions (a sweep sends hundreds of thousands)."""

    __slots__ = ("_base", "_head", "_v6", "source", "source_port")

    def __init__(self, source: bytes, source_port: int) -> None:
        if len(source) not in (4, 16):
            raise ValueError("addresses must both be 4 or both be 16 bytes")
        if not 0 < source_port <= 0xFFFF:
            raise ValueError(f"port out of range: {source_port}")
        self.source, self.source_port, self._v6 = source, source_port, len(source) == 16
        # Everything constant: our address, the protocol and length, our port, offset and
        # flags, window, the MSS option.
        fixed = pseudo_header(source, source, SYN_LENGTH)[2 * len(source) :]
        words = (
            source + fixed + struct.pack("!HBBH", source_port, (SYN_LENGTH // 4) << 4, SYN, WINDOW)
        )
        self._base = _sum16(words + _MSS_OPTION)
        self._head = _SYN_HEAD

    def build(self, destination: bytes, destination_port: int, seq: int) -> bytes:
        """The SYN to ``destination:destination_port`` with sequence number ``seq``; the same
        bytes as :func:`build_syn` (``ValueError`` for fields out of range)."""
        if len(destination) != (16 if self._v6 else 4):
            raise ValueError("addresses must both be 4 or both be 16 bytes")
        if not 0 < destination_port <= 0xFFFF or not 0 <= seq <= 0xFFFFFFFF:
            raise ValueError("port or sequence number out of range")
        words = _WORDS16 if self._v6 else _WORDS4
        total = self._base + sum(words.unpack(destination)) + destination_port
        total += (seq >> 16) + (seq & 0xFFFF)
        total = (total & 0xFFFF) + (total >> 16)
        total = (total & 0xFFFF) + (total >> 16)
        # One pack per SYN: the offset and flags as one word, the MSS option as one long.
        return self._head.pack(
            self.source_port, destination_port, seq, 0, _OFFSET_FLAGS, WINDOW, ~total & 0xFFFF,
            0, _MSS_WORD,
        )  # fmt: skip


_SYN_HEAD: Final = struct.Struct("!HHIIHHHHI")
_OFFSET_FLAGS: Final = ((SYN_LENGTH // 4) << 12) | SYN
_MSS_WORD: Final = int.from_bytes(_MSS_OPTION, "big")
_WORDS4: Final = struct.Struct("!2H")
_WORDS16: Final = struct.Struct("!8H")


def _sum16(data: bytes) -> int:
    """The plain sum of the 16-bit big-endian words of ``data`` (even length), unfolded."""
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    return total


@dataclass(frozen=True, slots=True, kw_only=True)
class Segment:
    """The fields of a received TCP header a SYN scan looks at. Addresses are packed (4 or 16
    bytes): ``source`` is the remote host, ``destination`` us."""

    source: bytes
    destination: bytes
    source_port: int
    destination_port: int
    seq: int
    ack: int
    flags: int

    @property
    def is_syn_ack(self) -> bool:
        return self.flags & (SYN | ACK | RST) == SYN | ACK

    @property
    def is_rst_ack(self) -> bool:
        """A reset answering a SYN: RST with ACK (its ``ack`` then names our sequence)."""
        return self.flags & (RST | ACK) == RST | ACK


def parse_tcp(data: bytes, source: bytes, destination: bytes) -> Segment | None:
    """The TCP header at the start of ``data`` (a segment from ``source`` to ``destination``),
    or None when ``data`` is too short for it or its data offset is impossible."""
    if len(data) < _TCP.size:
        return None
    sport, dport, seq, ack, offset, flags, _, _, _ = _TCP.unpack_from(data)
    header = (offset >> 4) * 4
    if header < _TCP.size or header > len(data):
        return None
    return Segment(
        source=source,
        destination=destination,
        source_port=sport,
        destination_port=dport,
        seq=seq,
        ack=ack,
        flags=flags,
    )


def parse_ipv4(packet: bytes) -> Segment | None:
    """The TCP header inside an IPv4 ``packet`` (IP header included, as a raw IPv4 socket
    delivers it), or None: not IPv4, not TCP, a fragment other than a whole packet, or a
    length field that does not fit the bytes received."""
    if len(packet) < 20:
        return None
    version_ihl, _, total_length, _, fragment, _, protocol = struct.unpack_from("!BBHHHBB", packet)
    ihl = (version_ihl & 0x0F) * 4
    if version_ihl >> 4 != 4 or ihl < 20 or protocol != _PROTO_TCP:
        return None
    if fragment & 0x3FFF:  # more-fragments flag or a fragment offset: not one whole packet
        return None
    end = min(total_length, len(packet)) if total_length else len(packet)
    if end < ihl:
        return None
    return parse_tcp(packet[ihl:end], packet[12:16], packet[16:20])


#: What :func:`reply_ipv4` and :func:`reply_tcp` return: the remote address, our address
#: (both packed), the remote port, our port, the acknowledgement number and the flags.
Reply = tuple[bytes, bytes, int, int, int, int]
_REPLY: Final = struct.Struct("!HHIIBB")  # ports, seq, ack, offset, flags (the first 14 bytes)


def reply_ipv4(buffer: bytes | bytearray | memoryview, size: int) -> Reply | None:
    """:func:`parse_ipv4` for the receive loop: the first ``size`` bytes of ``buffer`` (a
    reused receive buffer), read in place, as a plain tuple; None exactly where
    :func:`parse_ipv4` is None. Never raises on bad input."""
    if size < 20 or size > len(buffer):
        return None
    version_ihl = buffer[0]
    ihl = (version_ihl & 0x0F) * 4
    if version_ihl >> 4 != 4 or ihl < 20 or buffer[9] != _PROTO_TCP:
        return None
    if ((buffer[6] << 8) | buffer[7]) & 0x3FFF:  # a fragment: not one whole packet
        return None
    total_length = (buffer[2] << 8) | buffer[3]
    end = min(total_length, size) if total_length else size
    if end - ihl < 20:
        return None
    sport, dport, _, ack, offset, flags = _REPLY.unpack_from(buffer, ihl)
    header = (offset >> 4) * 4
    if header < 20 or header > end - ihl:
        return None
    return bytes(buffer[12:16]), bytes(buffer[16:20]), sport, dport, ack, flags


def reply_tcp(data: bytes, source: bytes, destination: bytes) -> Reply | None:
    """:func:`parse_tcp` as a :data:`Reply` tuple (IPv6: the kernel strips the IP header)."""
    if len(data) < 20:
        return None
    sport, dport, _, ack, offset, flags = _REPLY.unpack_from(data)
    header = (offset >> 4) * 4
    if header < 20 or header > len(data):
        return None
    return source, destination, sport, dport, ack, flags
