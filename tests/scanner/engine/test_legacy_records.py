"""The legacy hello builder and record reader, pure: properties over arbitrary input.

The reader must never read past what it was given and never raise anything but
``RecordError``; well-formed flights must come back exactly, however they are split into
records and however much of them has arrived. The builder's every length field must agree
with what follows it.
"""

from __future__ import annotations

import contextlib
import struct
from typing import SupportsIndex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.engine.legacy import hello, kex, records, suites
from scanner.engine.legacy.records import INCOMPLETE, RecordError, ServerAlert, ServerFlight


class StrictBytes(bytes):
    """Bytes whose every index or slice must lie within them (a read out of bounds fails)."""

    def __getitem__(self, key: SupportsIndex | slice) -> int | bytes:  # type: ignore[override]
        if isinstance(key, slice):
            start, stop, _step = key.start or 0, key.stop, key.step
            assert 0 <= start <= len(self), f"slice start {start} outside {len(self)} bytes"
            assert stop is None or start <= stop <= len(self) or stop == start, (
                f"slice [{start}:{stop}] outside {len(self)} bytes"
            )
            return StrictBytes(bytes.__getitem__(self, key))
        index = key.__index__()
        assert 0 <= index < len(self), f"index {index} outside {len(self)} bytes"
        return bytes.__getitem__(self, index)


def _u24(n: int) -> bytes:
    return n.to_bytes(3, "big")


def flight_bytes(
    version: int,
    suite: int,
    chain: list[bytes],
    staple: bytes | None,
    fragment: int,
    record_version: int = 0x0301,
    *,
    done: bool = True,
) -> bytes:
    hello_body = struct.pack("!H", version) + bytes(32) + b"\x00" + struct.pack("!H", suite) + b"\0"
    certs = b"".join(_u24(len(c)) + c for c in chain)
    msgs = b"\x02" + _u24(len(hello_body)) + hello_body
    msgs += b"\x0b" + _u24(len(certs) + 3) + _u24(len(certs)) + certs
    if staple is not None:
        msgs += b"\x16" + _u24(len(staple) + 4) + b"\x01" + _u24(len(staple)) + staple
    msgs += b"\x0e\x00\x00\x00" if done else b""
    out = b""
    for at in range(0, len(msgs), fragment):
        piece = msgs[at : at + fragment]
        out += struct.pack("!BHH", 22, record_version, len(piece)) + piece
    return out


flights = st.builds(
    lambda *args: args,
    st.sampled_from(sorted(records.VERSIONS)),
    st.integers(0, 0xFFFF),
    st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=4),
    st.none() | st.binary(min_size=1, max_size=200),
    st.integers(1, 2000),
)


@settings(max_examples=300)
@given(st.binary(max_size=2000))
def test_any_bytes_give_an_answer_or_a_record_error(data: bytes) -> None:
    for reader in (records.read_flight, records.flight_so_far):
        try:
            answer = reader(StrictBytes(data))
        except RecordError:
            continue
        assert (
            answer is None
            or isinstance(answer, ServerFlight | ServerAlert)
            or (answer is INCOMPLETE)
        )
        if isinstance(answer, ServerFlight):
            assert sum(len(c) for c in answer.chain) <= len(data)


@settings(max_examples=300)
@given(st.binary(max_size=3000))
def test_handshake_messages_are_read_within_bounds(data: bytes) -> None:
    with contextlib.suppress(RecordError):
        records._messages(StrictBytes(data))


@settings(max_examples=200)
@given(flights)
def test_a_well_formed_flight_comes_back_exactly(
    flight: tuple[int, int, list[bytes], bytes | None, int],
) -> None:
    version, suite, chain, staple, fragment = flight
    data = flight_bytes(version, suite, chain, staple, fragment)
    expected = ServerFlight(
        version=version, cipher_suite=suite, chain=tuple(chain), ocsp_staple=staple
    )
    assert records.read_flight(StrictBytes(data)) == expected
    assert records.flight_so_far(StrictBytes(data)) == expected


@settings(max_examples=100)
@given(flights, st.data())
def test_a_flight_arriving_in_pieces_waits_for_the_rest(
    flight: tuple[int, int, list[bytes], bytes | None, int], data: st.DataObject
) -> None:
    version, suite, chain, staple, fragment = flight
    whole = flight_bytes(version, suite, chain, staple, fragment)
    cut = data.draw(st.integers(0, len(whole) - 9))  # before the ServerHelloDone arrived
    assert records.read_flight(StrictBytes(whole[:cut])) is INCOMPLETE


@settings(max_examples=300)
@given(flights, st.data())
def test_a_corrupted_flight_never_breaks_the_reader(
    flight: tuple[int, int, list[bytes], bytes | None, int], data: st.DataObject
) -> None:
    version, suite, chain, staple, fragment = flight
    whole = bytearray(flight_bytes(version, suite, chain, staple, fragment))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(whole) - 1))
        whole[at] = data.draw(st.integers(0, 255))
    with contextlib.suppress(RecordError):
        records.read_flight(StrictBytes(bytes(whole)))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x16\x02\x00\x00\x01\x02", "record version 2.0"),
        (b"\x16\x03\x04\x00\x01\x02", "record version 3.4"),
        (b"\x16\x03\x01\x48\x01", "over the TLS bound"),
        (b"\x17\x03\x03\x00\x01\x00", "record type 23"),
        (b"\x14\x03\x03\x00\x01\x01", "ChangeCipherSpec"),
        (b"\x16\x03\x03\x00\x04\x0b\x00\x00\x00", "before the ServerHello"),
        (b"\x16\x03\x03\x00\x00", "an empty handshake record"),
        (b"\x15\x03\x03\x00\x01\x02", "an alert record of 1 bytes"),
    ],
)
def test_impossible_flights_name_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        records.read_flight(data)


def test_an_alert_is_an_answer() -> None:
    assert records.read_flight(b"\x15\x03\x01\x00\x02\x02\x28") == ServerAlert(
        level=2, description=40
    )


def test_a_chain_then_an_alert_keeps_the_chain() -> None:
    data = flight_bytes(0x0301, 0x0005, [b"\x30\x00"], None, 100, done=False)
    data += b"\x15\x03\x01\x00\x02\x02\x28"
    found = records.read_flight(data)
    assert isinstance(found, ServerFlight)
    assert found.chain == (b"\x30\x00",)


# --- the builder ----------------------------------------------------------------------------


def _parse_hello(record: bytes) -> tuple[int, list[int], dict[int, bytes]]:
    """The test's own reading of a ClientHello record: version, suites, extensions."""
    kind, record_version, length = struct.unpack("!BHH", record[:5])
    assert (kind, record_version, length) == (22, 0x0301, len(record) - 5)
    body = record[5:]
    assert body[0] == 1
    assert int.from_bytes(body[1:4], "big") == len(body) - 4
    body = body[4:]
    version = int.from_bytes(body[0:2], "big")
    at = 34
    assert body[at] == 0  # no session id
    at += 1
    n = int.from_bytes(body[at : at + 2], "big")
    codes = [int.from_bytes(body[at + 2 + i : at + 4 + i], "big") for i in range(0, n, 2)]
    at += 2 + n
    assert body[at : at + 2] == b"\x01\x00"  # null compression only
    at += 2
    total = int.from_bytes(body[at : at + 2], "big")
    at += 2
    assert total == len(body) - at
    extensions: dict[int, bytes] = {}
    while at < len(body):
        kind, size = struct.unpack("!HH", body[at : at + 4])
        extensions[kind] = body[at + 4 : at + 4 + size]
        assert len(extensions[kind]) == size
        at += 4 + size
    return version, codes, extensions


@settings(max_examples=200)
@given(st.binary(min_size=32, max_size=32), st.none() | st.binary(max_size=hello.MAX_NAME))
def test_every_length_field_of_the_hello_agrees(random: bytes, sni: bytes | None) -> None:
    record = hello.client_hello(random, sni)
    version, codes, extensions = _parse_hello(record)
    assert version == 0x0303
    assert codes == list(suites.OFFERED)
    assert 0x0000 not in codes
    assert 0x5600 not in codes
    assert record[11:43] == random
    if sni:
        name = extensions[0]
        assert name == struct.pack("!HBH", len(sni) + 3, 0, len(sni)) + sni
    else:
        assert 0 not in extensions
    groups = extensions[10]
    assert int.from_bytes(groups[:2], "big") == len(groups) - 2 == 2 * len(hello.GROUPS)
    assert 19 in hello.GROUPS
    assert 21 in hello.GROUPS
    assert extensions[5] == b"\x01\x00\x00\x00\x00"
    assert len(record) < 1 << 14  # one record


@given(
    st.binary(max_size=64).filter(lambda b: len(b) != 32),
    st.none() | st.binary(min_size=hello.MAX_NAME + 1, max_size=70000),
)
def test_the_builder_refuses_out_of_bounds_input_with_value_error(
    random: bytes, sni: bytes | None
) -> None:
    with pytest.raises(ValueError, match="client random"):
        hello.client_hello(random, b"x")
    if sni is not None:
        with pytest.raises(ValueError, match="server name"):
            hello.client_hello(bytes(32), sni)


def test_every_named_weak_suite_is_offered() -> None:
    for code, name in suites.NAMES.items():
        assert code in suites.OFFERED, name
    assert suites.suite_name(0x0005) == "TLS_RSA_WITH_RC4_128_SHA"
    assert suites.suite_name(0xC0FF) == "0xC0FF"


@settings(max_examples=300)
@given(st.binary(max_size=2000))
def test_the_tolerant_key_exchange_finder_never_raises_nor_reads_out_of_bounds(data: bytes) -> None:
    body = records.server_key_exchange(StrictBytes(data))
    assert body is None or len(body) <= len(data)


def test_the_key_exchange_is_found_before_a_change_cipher_spec() -> None:
    ske = b"\x03\x00\x17\x01\x04\x06\x03\x00\x00"
    hello = b"\x02\x00\x00\x26\x03\x03" + bytes(32) + b"\x00\xc0\x2b\x00"
    flight = hello + b"\x0c" + len(ske).to_bytes(3, "big") + ske + b"\x0e\x00\x00\x00"
    data = struct.pack("!BHH", 22, 0x0303, len(flight)) + flight + b"\x14\x03\x03\x00\x01\x01"
    assert records.server_key_exchange(data) == ske
    assert kex.key_exchange(ske, "ECDHE-ECDSA-AES128-GCM-SHA256", 0x0303) == (
        "secp256r1",
        "ecdsa_sha512",
    )
    assert records.server_key_exchange(data[:20]) is None


# --- the ServerKeyExchange reader ------------------------------------------------------------


@settings(max_examples=300)
@given(
    st.binary(max_size=600),
    st.sampled_from(["TLS_ECDHE_RSA_WITH_RC4_128_SHA", "TLS_DHE_RSA_WITH_AES_128_CBC_SHA", "x"]),
    st.sampled_from(sorted(records.VERSIONS)),
)
def test_any_key_exchange_body_is_read_within_bounds(body: bytes, suite: str, version: int) -> None:
    group, scheme = kex.key_exchange(StrictBytes(body), suite, version)
    assert group is None or isinstance(group, str)
    assert scheme is None or isinstance(scheme, str)


def test_ecdhe_and_dhe_bodies_name_group_and_scheme() -> None:
    point = b"\x04" + bytes(64)
    ecdhe = b"\x03\x00\x13" + bytes((len(point),)) + point + b"\x04\x03" + b"\x00\x02\x30\x00"
    assert kex.key_exchange(ecdhe, "TLS_ECDHE_ECDSA_WITH_NULL_SHA", 0x0303) == (
        "secp192r1",
        "ecdsa_sha256",
    )
    assert kex.key_exchange(ecdhe, "TLS_ECDHE_ECDSA_WITH_NULL_SHA", 0x0301) == ("secp192r1", None)
    dhe = b"".join(struct.pack("!H", 2) + b"\x01\x02" for _ in range(3)) + b"\x02\x02"
    assert kex.key_exchange(dhe, "TLS_DHE_DSS_WITH_DES_CBC_SHA", 0x0303) == (None, "dsa_sha1")
    assert kex.key_exchange(dhe[:-3], "TLS_DHE_DSS_WITH_DES_CBC_SHA", 0x0303) == (None, None)
    assert kex.key_exchange(ecdhe, "TLS_RSA_WITH_RC4_128_SHA", 0x0303) == (None, None)
    assert kex.scheme_name(0x0804) == "rsa_pss_rsae_sha256"
    assert kex.scheme_name(0x0807) == "ed25519"
    assert kex.scheme_name(0xFFFF) == "0xffff"
