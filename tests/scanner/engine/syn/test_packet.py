"""The SYN builder and reply parser: checksums, field round trips, bounds on crafted input."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.engine.syn import packet

ports = st.integers(1, 0xFFFF)
seqs = st.integers(0, 0xFFFFFFFF)
v4 = st.binary(min_size=4, max_size=4)
v6 = st.binary(min_size=16, max_size=16)
pairs = st.one_of(st.tuples(v4, v4), st.tuples(v6, v6))


def _reference_checksum(data: bytes) -> int:
    """RFC 1071 written out word by word, to check the fast one against."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@given(st.binary(max_size=3000))
def test_checksum_matches_the_reference(data: bytes) -> None:
    assert packet.checksum(data) == _reference_checksum(data)


def test_checksum_known_value() -> None:
    # The worked example of RFC 1071 section 3: words 0001 f203 f4f5 f6f7 sum to ddf2.
    assert packet.checksum(bytes.fromhex("0001f203f4f5f6f7")) == ~0xDDF2 & 0xFFFF


@given(pairs, ports, ports, seqs)
def test_syn_round_trips_and_verifies(
    addresses: tuple[bytes, bytes], sp: int, dp: int, seq: int
) -> None:
    src, dst = addresses
    syn = packet.build_syn(src, sp, dst, dp, seq)
    assert len(syn) == packet.SYN_LENGTH
    # A segment with a right checksum sums (with its pseudo-header) to zero.
    assert packet.checksum(packet.pseudo_header(src, dst, len(syn)) + syn) == 0
    seg = packet.parse_tcp(syn, src, dst)
    assert seg is not None
    assert (seg.source_port, seg.destination_port, seg.seq, seg.ack) == (sp, dp, seq, 0)
    assert seg.flags == packet.SYN
    assert not seg.is_syn_ack
    assert not seg.is_rst_ack


@given(pairs, ports, ports, seqs)
def test_the_template_builds_the_same_bytes(
    addresses: tuple[bytes, bytes], sp: int, dp: int, seq: int
) -> None:
    src, dst = addresses
    template = packet.SynTemplate(src, sp)
    assert template.build(dst, dp, seq) == packet.build_syn(src, sp, dst, dp, seq)


def test_the_template_checks_its_fields() -> None:
    template = packet.SynTemplate(b"\1" * 4, 40000)
    for bad in [(b"\2" * 16, 443, 1), (b"\2" * 4, 0, 1), (b"\2" * 4, 443, 2**32)]:
        with pytest.raises(ValueError, match=r"range|bytes"):
            template.build(*bad)
    with pytest.raises(ValueError, match="range"):
        packet.SynTemplate(b"\1" * 4, 0)


def test_syn_checksum_against_a_known_packet() -> None:
    # 127.0.0.1:40000 -> 127.0.0.2:443 seq 1: the checksum computed by hand from the words.
    syn = packet.build_syn(bytes([127, 0, 0, 1]), 40000, bytes([127, 0, 0, 2]), 443, 1)
    words = [0x7F00, 0x0001, 0x7F00, 0x0002, 0x0006, 24]
    words += list(struct.unpack("!12H", syn[:16] + b"\0\0" + syn[18:]))
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert struct.unpack("!H", syn[16:18])[0] == ~total & 0xFFFF
    assert syn[20:24] == bytes([2, 4, 0x05, 0xB4])  # MSS 1460


@pytest.mark.parametrize(
    ("sp", "dp", "seq"), [(0, 443, 1), (1, 0, 1), (65536, 443, 1), (1, 443, -1), (1, 443, 2**32)]
)
def test_syn_refuses_out_of_range_fields(sp: int, dp: int, seq: int) -> None:
    with pytest.raises(ValueError, match="range"):
        packet.build_syn(b"\1" * 4, sp, b"\2" * 4, dp, seq)


@pytest.mark.parametrize(("a", "b"), [(b"\1" * 4, b"\2" * 16), (b"\1" * 5, b"\2" * 5), (b"", b"")])
def test_pseudo_header_refuses_bad_addresses(a: bytes, b: bytes) -> None:
    with pytest.raises(ValueError, match="bytes"):
        packet.pseudo_header(a, b, 20)


def _ipv4(
    src: bytes,
    dst: bytes,
    tcp: bytes,
    *,
    proto: int = 6,
    frag: int = 0,
    total: int | None = None,
    ihl: int = 5,
) -> bytes:
    length = 4 * ihl + len(tcp) if total is None else total
    head = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, length, 1, frag, 64, proto, 0, src, dst)
    return head + b"\0" * (4 * ihl - 20) + tcp


def _reply(flags: int, ack: int, *, offset: int = 5) -> bytes:
    return struct.pack("!HHIIBBHHH", 443, 40000, 7, ack, offset << 4, flags, 1024, 0, 0) + b"\0" * (
        4 * offset - 20
    )


def test_parse_ipv4_syn_ack() -> None:
    src, dst = ipaddress.ip_address("127.0.0.2").packed, ipaddress.ip_address("127.0.0.1").packed
    seg = packet.parse_ipv4(_ipv4(src, dst, _reply(packet.SYN | packet.ACK, 99)))
    assert seg is not None
    assert (seg.source, seg.destination, seg.source_port, seg.destination_port) == (
        src,
        dst,
        443,
        40000,
    )
    assert seg.ack == 99
    assert seg.is_syn_ack
    rst = packet.parse_ipv4(_ipv4(src, dst, _reply(packet.RST | packet.ACK, 5), ihl=6))
    assert rst is not None
    assert rst.is_rst_ack
    assert not rst.is_syn_ack


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x45" * 19,
        _ipv4(b"\1" * 4, b"\2" * 4, _reply(0x12, 1), proto=17),  # UDP
        _ipv4(b"\1" * 4, b"\2" * 4, _reply(0x12, 1), frag=0x2000),  # more fragments
        _ipv4(b"\1" * 4, b"\2" * 4, _reply(0x12, 1), frag=0x0010),  # a later fragment
        _ipv4(b"\1" * 4, b"\2" * 4, _reply(0x12, 1), total=30),  # total length cuts TCP short
        _ipv4(b"\1" * 4, b"\2" * 4, _reply(0x12, 1), total=12),  # total length below IHL
        b"\x65" + _ipv4(b"\1" * 4, b"\2" * 4, _reply(0x12, 1))[1:],  # version 6
        b"\x44" + _ipv4(b"\1" * 4, b"\2" * 4, _reply(0x12, 1))[1:],  # IHL 4
        b"\x4f" + _ipv4(b"\1" * 4, b"\2" * 4, _reply(0x12, 1))[1:],  # IHL beyond the packet
        _ipv4(b"\1" * 4, b"\2" * 4, _reply(0x12, 1, offset=4)),  # TCP data offset below 5
        _ipv4(b"\1" * 4, b"\2" * 4, _reply(0x12, 1)[:19]),  # TCP header cut
        _ipv4(b"\1" * 4, b"\2" * 4, struct.pack("!HHIIBBHHH", 1, 2, 3, 4, 0xF0, 0x12, 0, 0, 0)),
    ],
)
def test_parse_ipv4_rejects_what_no_reply_is(raw: bytes) -> None:
    assert packet.parse_ipv4(raw) is None


@given(st.binary(max_size=120))
def test_parse_ipv4_never_raises_on_garbage(raw: bytes) -> None:
    seg = packet.parse_ipv4(raw)
    if seg is not None:
        assert len(seg.source) == len(seg.destination) == 4
        assert 0 <= seg.source_port <= 0xFFFF


@given(st.binary(max_size=80), v6, v6)
def test_parse_tcp_never_raises_and_bounds_the_header(data: bytes, src: bytes, dst: bytes) -> None:
    seg = packet.parse_tcp(data, src, dst)
    if seg is None:
        assert len(data) < 20 or not 20 <= (data[12] >> 4) * 4 <= len(data)
    else:
        assert 20 <= (data[12] >> 4) * 4 <= len(data)


def _as_reply(seg: packet.Segment | None) -> packet.Reply | None:
    if seg is None:
        return None
    return (seg.source, seg.destination, seg.source_port, seg.destination_port, seg.ack, seg.flags)


# IPv4 headers carrying TCP with every field that matters varied (so the generator reaches the
# deep checks), cut anywhere, besides plain noise.
_plausible = st.builds(
    lambda ihl, frag, total, offset, tail, cut: _ipv4(
        b"\1\2\3\4",
        b"\5\6\7\x08",
        struct.pack("!HHIIBBHHH", 443, 40000, 7, 9, offset << 4, 0x12, 0, 0, 0) + tail,
        ihl=ihl,
        frag=frag,
        total=total,
    )[:cut],
    st.integers(0, 15),
    st.sampled_from([0, 0, 0, 0x2000, 0x0001, 0x4000]),
    st.one_of(st.none(), st.integers(0, 0xFFFF)),
    st.integers(0, 15),
    st.binary(max_size=40),
    st.integers(0, 120),
)


@given(st.one_of(st.binary(max_size=120), _plausible))
def test_the_in_place_reply_parser_agrees_with_parse_ipv4(raw: bytes) -> None:
    """The receive loop's parser (a reused buffer, a size, a tuple) accepts and rejects exactly
    what ``parse_ipv4`` does, whatever the bytes, and never raises."""
    buffer = bytearray(128)
    size = min(len(raw), len(buffer))
    buffer[:size] = raw[:size]
    assert packet.reply_ipv4(buffer, size) == _as_reply(packet.parse_ipv4(raw[:size]))
    assert packet.reply_ipv4(raw, len(raw)) == _as_reply(packet.parse_ipv4(raw))
    assert packet.reply_ipv4(raw, len(raw) + 1) is None  # a size beyond the buffer


def test_the_in_place_reply_parser_reads_a_syn_ack() -> None:
    raw = _ipv4(b"\1\2\3\4", b"\5\6\7\x08", _reply(0x12, 1234))
    buffer = bytearray(128)
    buffer[: len(raw)] = raw
    got = packet.reply_ipv4(buffer, len(raw))
    assert got == _as_reply(packet.parse_ipv4(raw))
    assert got is not None
    assert got[:2] == (b"\1\2\3\4", b"\5\6\7\x08")
    assert got[5] == 0x12


@given(st.binary(max_size=80), v6, v6)
def test_reply_tcp_agrees_with_parse_tcp(data: bytes, src: bytes, dst: bytes) -> None:
    assert packet.reply_tcp(data, src, dst) == _as_reply(packet.parse_tcp(data, src, dst))
