"""scanner.zones.wire: every outcome survives JSON exactly; everything else is refused with a
reason."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.models import PROTOCOLS, FailureKind, Handshake, Outcome, ScanFailure, Target
from scanner.zones.wire import DerTable, WireError, WireLimits, outcome_from_wire, outcome_to_wire

addresses = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
names = st.text(min_size=1, max_size=80)
protocols = st.none() | st.sampled_from(PROTOCOLS)
when = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(2200, 1, 1),
    timezones=st.just(UTC),
)
secs = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
ders = st.binary(min_size=0, max_size=300)
chains = st.lists(ders, max_size=5).map(tuple)
legacy = st.lists(st.sampled_from(["TLSv1", "TLSv1.1"]), max_size=2).map(tuple)

targets = st.builds(
    Target,
    address=addresses,
    port=st.integers(1, 65535),
    sni=st.none() | names,
    protocol=protocols,
)
handshakes = st.builds(
    Handshake,
    target=targets,
    started_at=when,
    chain=chains,
    tls_version=st.sampled_from(["TLSv1.3", "TLSv1.2", "TLSv1"]) | names,
    cipher=names,
    alpn=st.none() | names,
    ocsp_staple=st.none() | st.binary(max_size=200),
    client_cert_requested=st.booleans(),
    legacy_versions=st.none() | legacy,
    connect_seconds=secs,
    handshake_seconds=secs,
    protocol=protocols,
    alt_chains=st.lists(chains, max_size=2).map(tuple),
    legacy_capture=st.booleans(),
    group=st.none() | names,
    signature_scheme=st.none() | names,
)
failures = st.builds(
    ScanFailure,
    target=targets,
    started_at=when,
    kind=st.sampled_from(FailureKind),
    detail=st.text(max_size=200),
    elapsed_seconds=secs,
    connected=st.booleans(),
)


def through_json(outcomes: list[Outcome]) -> list[Outcome]:
    certs = DerTable()
    message = {"items": [outcome_to_wire(o, certs) for o in outcomes], "certs": certs.to_wire()}
    received = json.loads(json.dumps(message))
    table = DerTable.from_wire(received["certs"])
    return [outcome_from_wire(item, table) for item in received["items"]]


@settings(max_examples=200, deadline=None)
@given(st.lists(handshakes | failures, max_size=4))
def test_round_trip_is_exact(outcomes: list[Outcome]) -> None:
    back = through_json(outcomes)
    assert back == outcomes
    for a, b in zip(back, outcomes, strict=True):
        assert type(a) is type(b)
        assert a.started_at.tzinfo is UTC
        if isinstance(a, Handshake) and isinstance(b, Handshake):
            assert isinstance(a.chain, tuple)
            assert all(isinstance(alt, tuple) for alt in a.alt_chains)
            assert type(a.connect_seconds) is float


def test_a_shared_certificate_is_sent_once() -> None:
    target = Target(address="10.0.0.1", port=443)
    now = datetime.now(UTC)
    one = Handshake(
        target=target, started_at=now, chain=(b"leaf", b"ca"), tls_version="TLSv1.3", cipher="X"
    )
    two = Handshake(
        target=target, started_at=now, chain=(b"other", b"ca"), tls_version="TLSv1.3", cipher="X"
    )
    certs = DerTable()
    outcome_to_wire(one, certs)
    outcome_to_wire(two, certs)
    assert len(certs) == 3


def test_naive_datetime_is_refused_when_sending() -> None:
    failure = ScanFailure(
        target=Target(address="10.0.0.1", port=443),
        started_at=datetime(2026, 1, 1),
        kind=FailureKind.REFUSED,
        detail="refused",
    )
    with pytest.raises(ValueError, match="naive"):
        outcome_to_wire(failure, DerTable())


def good_failure() -> dict[str, Any]:
    failure = ScanFailure(
        target=Target(address="10.0.0.1", port=443, sni="a.example", protocol="tls"),
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        kind=FailureKind.TIMEOUT,
        detail="timed out",
        elapsed_seconds=1.5,
    )
    return outcome_to_wire(failure, DerTable())


def good_handshake(certs: DerTable) -> dict[str, Any]:
    handshake = Handshake(
        target=Target(address="10.0.0.1", port=443),
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        chain=(b"leaf",),
        tls_version="TLSv1.3",
        cipher="TLS_AES_128_GCM_SHA256",
    )
    return outcome_to_wire(handshake, certs)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda d: d.update(type="other"), "outcome.type"),
        (lambda d: d.update(extra=1), "unknown field"),
        (lambda d: d.pop("detail"), "detail: missing"),
        (lambda d: d.update(connected=1), "connected: expected bool"),
        (lambda d: d.update(elapsed_seconds=True), "elapsed_seconds"),
        (lambda d: d.update(elapsed_seconds=-1.0), "elapsed_seconds"),
        (lambda d: d.update(elapsed_seconds=float("nan")), "elapsed_seconds"),
        (lambda d: d.update(kind="exploded"), "kind"),
        (lambda d: d.update(detail="x" * 20_000), "detail: longer"),
        (lambda d: d.update(started_at="2026-01-01T00:00:00"), "UTC"),
        (lambda d: d.update(started_at="2026-01-01T00:00:00+02:00"), "UTC"),
        (lambda d: d.update(started_at="yesterday"), "ISO 8601"),
        (lambda d: d["target"].update(port=0), "port"),
        (lambda d: d["target"].update(port="443"), "port"),
        (lambda d: d["target"].update(address="010.0.0.1"), "address"),
        (lambda d: d["target"].update(address="2001:DB8::1"), "canonical"),
        (lambda d: d["target"].update(protocol="gopher"), "protocol"),
        (lambda d: d.update(target=[]), "target"),
    ],
)
def test_malformed_failures_are_refused(change: Any, needle: str) -> None:
    data = good_failure()
    change(data)
    with pytest.raises(WireError, match=needle):
        outcome_from_wire(data, DerTable())


def test_handshake_chain_must_name_carried_certificates() -> None:
    certs = DerTable()
    data = good_handshake(certs)
    table = DerTable.from_wire(certs.to_wire())
    assert isinstance(outcome_from_wire(data, table), Handshake)
    with pytest.raises(WireError, match="names no certificate"):
        outcome_from_wire(data, DerTable())
    data["chain"] = ["00" * 32] * 5000
    with pytest.raises(WireError, match="more than 4096"):
        outcome_from_wire(data, table)


def test_certificate_table_is_checked() -> None:
    der = b"x" * 100
    name = DerTable().add(der)
    good = {name: base64.b64encode(der).decode()}
    assert len(DerTable.from_wire(good)) == 1
    with pytest.raises(WireError, match="SHA-256"):
        DerTable.from_wire({"0" * 64: base64.b64encode(der).decode()})
    with pytest.raises(WireError, match="base64"):
        DerTable.from_wire({name: "not base64!"})
    with pytest.raises(WireError, match="larger than 50"):
        DerTable.from_wire(good, WireLimits(max_der_bytes=50))
    with pytest.raises(WireError, match="more than 0"):
        DerTable.from_wire(good, WireLimits(max_certs=0))
    with pytest.raises(WireError, match="expected an object"):
        DerTable.from_wire([])


def test_other_utc_spellings_are_utc() -> None:
    data = good_failure()
    data["started_at"] = "2026-01-01T00:00:00Z"
    back = outcome_from_wire(data, DerTable())
    assert back.started_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert back.started_at.tzinfo is UTC
    offset = datetime(2026, 1, 1, 2, tzinfo=timezone(timedelta(hours=2)))
    assert outcome_from_wire(
        {**data, "started_at": offset.astimezone(UTC).isoformat()}, DerTable()
    ).started_at == datetime(2026, 1, 1, tzinfo=UTC)


def test_an_older_agents_handshake_without_tls_details_is_accepted() -> None:
    target = Target(address="10.0.0.1", port=443)
    one = Handshake(
        target=target, started_at=datetime.now(UTC), chain=(b"leaf",), tls_version="TLSv1.3",
        cipher="X", group="x25519", legacy_capture=True,
    )  # fmt: skip
    certs = DerTable()
    wire = outcome_to_wire(one, certs)
    assert (wire["group"], wire["legacy_capture"], wire["signature_scheme"]) == (
        "x25519",
        True,
        None,
    )
    for key in ("legacy_capture", "group", "signature_scheme"):
        del wire[key]
    back = outcome_from_wire(json.loads(json.dumps(wire)), DerTable.from_wire(certs.to_wire()))
    assert isinstance(back, Handshake)
    assert (back.legacy_capture, back.group, back.signature_scheme) == (False, None, None)
