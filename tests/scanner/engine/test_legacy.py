"""Legacy capture against real loopback servers our TLS library cannot talk to.

P-192, P-224 and NULL-only servers are ``openssl s_server`` (the system OpenSSL serves them at
security level 0). RC4-only, 3DES-only and SSLv3-only servers are hand-framed
(``tests/legacy_peers.py``): no OpenSSL installed here serves them (the system one is built
without SSLv3, RC4 and 3DES; ``openssl ciphers RC4`` and ``3DES`` match nothing, even with the
legacy provider).
"""

from __future__ import annotations

from itertools import count

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from reports.ciphers import cipher_weakness
from scanner.engine.crew import probe
from scanner.lab.certgen import make_key, make_leaf
from scanner.models import EngineLimits, FailureKind, Handshake, ScanFailure, Severity
from tests import peers
from tests.conftest import require_tool
from tests.legacy_peers import legacy_server

LIMITS = EngineLimits(connect_timeout=2.0, handshake_timeout=2.0, target_deadline=4.0)
_addresses = count(1)


def fresh_address() -> str:
    n = next(_addresses)
    return f"127.94.{n // 250}.{n % 250 + 1}"


@pytest.fixture(scope="module")
def pki() -> peers.Pki:
    return peers.make_pki()


@pytest.fixture(scope="module")
def rsa_pki() -> peers.Pki:
    base = peers.make_pki()
    key = make_key("rsa")
    leaf = make_leaf(base.intermediate, cn="localhost", dns_names=["localhost"], key=key)
    return peers.Pki(root=base.root, intermediate=base.intermediate, leaf=leaf)


def _curve_pki(base: peers.Pki, curve: ec.EllipticCurve) -> peers.Pki:
    key = ec.generate_private_key(curve)
    leaf = make_leaf(base.intermediate, cn="localhost", dns_names=["localhost"], key=key)
    return peers.Pki(root=base.root, intermediate=base.intermediate, leaf=leaf)


@pytest.mark.parametrize(
    ("curve", "group", "name"),
    [(ec.SECP192R1(), "P-192", "secp192r1"), (ec.SECP224R1(), "P-224", "secp224r1")],
)
async def test_small_curve_servers_are_captured(
    pki: peers.Pki, curve: ec.EllipticCurve, group: str, name: str
) -> None:
    require_tool("openssl")
    small = _curve_pki(pki, curve)
    options = ("-cipher", "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0", "-groups", group, "-tls1_2")
    async with peers.openssl_server(fresh_address(), small.served, *options) as target:
        found = await probe(target, LIMITS)
    assert isinstance(found, Handshake), found
    assert found.legacy_capture is True
    assert found.chain == (small.leaf.der, small.intermediate.der)
    assert found.tls_version == "TLSv1.2"
    assert found.cipher == "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"
    # From the ServerKeyExchange in clear: the curve it chose, and how it signed.
    assert found.group == name
    assert (found.signature_scheme or "").startswith("ecdsa_sha")


async def test_null_only_server_is_captured_and_graded_critical(rsa_pki: peers.Pki) -> None:
    require_tool("openssl")
    options = ("-cipher", "NULL-SHA256:@SECLEVEL=0", "-tls1_2")
    async with peers.openssl_server(fresh_address(), rsa_pki.served, *options) as target:
        found = await probe(target, LIMITS)
    assert isinstance(found, Handshake), found
    assert (found.legacy_capture, found.tls_version) == (True, "TLSv1.2")
    assert found.cipher == "TLS_RSA_WITH_NULL_SHA256"
    assert found.chain[0] == rsa_pki.leaf.der
    weakness = cipher_weakness(found.cipher)
    assert weakness is not None
    assert weakness.severity is Severity.CRITICAL


@pytest.mark.parametrize(
    ("suite", "version", "name", "tls_version", "severity"),
    [
        (0x0005, 0x0303, "TLS_RSA_WITH_RC4_128_SHA", "TLSv1.2", Severity.HIGH),
        (0x000A, 0x0301, "TLS_RSA_WITH_3DES_EDE_CBC_SHA", "TLSv1", Severity.HIGH),
        (0x0003, 0x0300, "TLS_RSA_EXPORT_WITH_RC4_40_MD5", "SSLv3", Severity.CRITICAL),
        # An SSLv3-only server with a suite OpenSSL offers: its ServerHello is refused.
        (0x002F, 0x0300, "TLS_RSA_WITH_AES_128_CBC_SHA", "SSLv3", Severity.MEDIUM),
    ],
)
async def test_hand_framed_legacy_servers_are_captured(
    rsa_pki: peers.Pki, suite: int, version: int, name: str, tls_version: str, severity: Severity
) -> None:
    seen: list[tuple[int, set[int]]] = []
    staple = b"\x30\x03\x0a\x01\x00"  # the bytes are kept, never judged by the engine
    chain = (rsa_pki.leaf.der, rsa_pki.intermediate.der)
    handler = legacy_server(chain, suite=suite, version=version, staple=staple, seen=seen)
    async with peers.serve(fresh_address(), handler) as peer:
        found = await probe(peer.target("localhost"), LIMITS)
    assert isinstance(found, Handshake), found
    assert found.legacy_capture is True
    assert (found.tls_version, found.cipher) == (tls_version, name)
    assert found.chain == chain
    assert found.ocsp_staple == staple
    weakness = cipher_weakness(found.cipher)
    assert weakness is not None
    assert weakness.severity is severity
    assert len(seen) == 2  # the normal handshake, then exactly one legacy hello
    assert suite in seen[1][1]
    assert len(seen[1][1]) > 500


async def test_a_big_chain_over_many_records_is_reassembled(rsa_pki: peers.Pki) -> None:
    big = peers.make_pki(san_count=600)
    chain = (big.leaf.der, big.intermediate.der, big.root.der)
    handler = legacy_server(chain, suite=0x0004, fragment=700)
    async with peers.serve(fresh_address(), handler) as peer:
        found = await probe(peer.target("localhost"), LIMITS)
    assert isinstance(found, Handshake), found
    assert found.chain == chain


async def test_the_read_bound_holds_for_a_legacy_capture(rsa_pki: peers.Pki) -> None:
    big = peers.make_pki(san_count=400)
    handler = legacy_server((big.leaf.der,), suite=0x0004)
    limits = EngineLimits(max_chain_bytes=8192, handshake_timeout=2.0, target_deadline=4.0)
    async with peers.serve(fresh_address(), handler) as peer:
        found = await probe(peer.target("localhost"), limits)
    assert isinstance(found, ScanFailure), found
    assert found.kind is FailureKind.TLS_ALERT  # the first failure stands
    assert found.detail == (
        "handshake_failure (40); legacy capture: server sent more than 8192 bytes in the handshake"
    )


async def test_healthy_servers_never_get_a_legacy_hello(pki: peers.Pki) -> None:
    tally = peers.Tally()
    ctx = peers.server_context(pki.served)
    async with peers.serve(fresh_address(), peers.tls_server(ctx), tally=tally) as peer:
        found = await probe(peer.target("localhost"), LIMITS)
    assert isinstance(found, Handshake)
    assert not found.legacy_capture
    assert tally.accepted == 1


async def test_a_server_refusing_the_legacy_hello_too_keeps_its_first_failure() -> None:
    tally = peers.Tally()
    handler = peers.speaks(peers.alert_record(40), first_read=True)
    async with peers.serve(fresh_address(), handler, tally=tally) as peer:
        found = await probe(peer.target("localhost"), LIMITS)
    assert isinstance(found, ScanFailure)
    assert found.kind is FailureKind.TLS_ALERT
    assert found.detail == "handshake_failure (40); legacy capture: handshake_failure (40)"
    assert tally.accepted == 2  # one extra connection, no more


async def test_legacy_capture_can_be_turned_off(rsa_pki: peers.Pki) -> None:
    handler = legacy_server((rsa_pki.leaf.der,), suite=0x0005)
    limits = EngineLimits(handshake_timeout=2.0, legacy_capture=False)
    async with peers.serve(fresh_address(), handler) as peer:
        found = await probe(peer.target("localhost"), limits)
    assert isinstance(found, ScanFailure)
    assert found.kind is FailureKind.TLS_ALERT
