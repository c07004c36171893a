"""One target at a time against real loopback servers: what ``probe`` captures and how every
failure is classified. The servers are in ``tests/peers.py``; certificates come from certgen."""

from __future__ import annotations

import errno
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
import trio
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from scanner.engine import tls
from scanner.engine.crew import probe
from scanner.errors import UsageError
from scanner.models import EngineLimits, FailureKind, Handshake, ScanFailure, Target
from tests import peers

FAST = EngineLimits(connect_timeout=2.0, handshake_timeout=2.0, target_deadline=3.0)
_addresses = count(1)


def fresh_address() -> str:
    """A distinct 127.91.x.y per server, so no test shares an address with another."""
    n = next(_addresses)
    return f"127.91.{n // 250}.{n % 250 + 1}"


@pytest.fixture(scope="module")
def pki() -> peers.Pki:
    return peers.make_pki()


@asynccontextmanager
async def running(handler: peers.Handler) -> AsyncIterator[peers.Peer]:
    async with peers.serve(fresh_address(), handler) as peer:
        yield peer


async def handshake_with(
    handler: peers.Handler, limits: EngineLimits = FAST, sni: str | None = "localhost"
) -> Handshake:
    async with running(handler) as peer:
        outcome = await probe(peer.target(sni), limits)
    assert isinstance(outcome, Handshake), outcome
    return outcome


async def failure_from(handler: peers.Handler, limits: EngineLimits = FAST) -> ScanFailure:
    async with running(handler) as peer:
        outcome = await probe(peer.target("localhost"), limits)
    assert isinstance(outcome, ScanFailure), outcome
    return outcome


# --- what a good handshake captures ---------------------------------------------------------


async def test_healthy_server_yields_the_chain_as_sent(pki: peers.Pki) -> None:
    ctx = peers.server_context(pki.served, alpn=["h2", "http/1.1"])
    before = datetime.now(UTC)
    result = await handshake_with(peers.tls_server(ctx))
    assert result.chain == (pki.leaf.der, pki.intermediate.der)  # order and bytes as served
    assert result.tls_version == "TLSv1.3"
    assert result.cipher.startswith("TLS_")
    assert result.alpn == "h2"
    assert result.status == "ok"
    assert result.client_cert_requested is False
    assert result.ocsp_staple is None  # stdlib servers cannot staple
    assert before <= result.started_at <= datetime.now(UTC)
    assert result.started_at.tzinfo is UTC
    assert 0 <= result.connect_seconds < 1
    assert 0 < result.handshake_seconds < 1


async def test_ipv6_loopback(pki: peers.Pki) -> None:
    ctx = peers.server_context(pki.served)
    async with peers.serve("::1", peers.tls_server(ctx)) as peer:
        outcome = await probe(peer.target(), FAST)
    assert isinstance(outcome, Handshake), outcome
    assert outcome.chain == (pki.leaf.der, pki.intermediate.der)


async def test_alpn_falls_back_and_is_absent_when_not_agreed(pki: peers.Pki) -> None:
    http1 = peers.server_context(pki.served, alpn=["http/1.1"])
    assert (await handshake_with(peers.tls_server(http1))).alpn == "http/1.1"
    plain = peers.server_context(pki.served)
    assert (await handshake_with(peers.tls_server(plain))).alpn is None


async def test_tls_1_2_server(pki: peers.Pki) -> None:
    ctx = peers.server_context(pki.served, maximum=ssl.TLSVersion.TLSv1_2)
    result = await handshake_with(peers.tls_server(ctx))
    assert result.tls_version == "TLSv1.2"
    assert result.cipher.startswith("ECDHE-ECDSA-")
    assert result.chain == (pki.leaf.der, pki.intermediate.der)


async def test_tls_1_0_server_with_sha1_era_cipher(pki: peers.Pki) -> None:
    ctx = peers.server_context(
        pki.served,
        minimum=ssl.TLSVersion.TLSv1,
        maximum=ssl.TLSVersion.TLSv1,
        ciphers="ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0",
    )
    result = await handshake_with(peers.tls_server(ctx))
    assert result.tls_version == "TLSv1"
    assert result.cipher == "ECDHE-ECDSA-AES128-SHA"
    assert result.chain == (pki.leaf.der, pki.intermediate.der)


async def test_minimum_version_is_enforced_and_the_alert_named(pki: peers.Pki) -> None:
    tls10_only = ("-tls1", "-cipher", "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0")
    async with peers.openssl_server(fresh_address(), pki.served, *tls10_only) as target:
        old = await probe(target, FAST)
        refused = await probe(target, EngineLimits(tls_min_version="TLSv1.2"))
    assert isinstance(old, Handshake), old
    assert old.tls_version == "TLSv1"
    assert isinstance(refused, ScanFailure)
    assert refused.kind is FailureKind.TLS_ALERT
    assert refused.detail == "protocol_version (70)"


@pytest.mark.parametrize(
    "maximum", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"]
)
async def test_client_certificate_required_still_yields_the_chain(
    pki: peers.Pki, maximum: ssl.TLSVersion
) -> None:
    ctx = peers.server_context(pki.served, minimum=maximum, maximum=maximum, client_ca=pki.root)
    result = await handshake_with(peers.tls_server(ctx))
    assert result.client_cert_requested is True
    assert result.status == "client_cert_required"
    assert result.chain == (pki.leaf.der, pki.intermediate.der)
    assert result.tls_version == ("TLSv1.3" if maximum is ssl.TLSVersion.TLSv1_3 else "TLSv1.2")


async def test_sni_is_sent_idna_encoded_and_never_for_addresses(pki: peers.Pki) -> None:
    seen: list[str | None] = []

    def record(_obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        seen.append(name)

    ctx = peers.server_context(pki.served)
    ctx.sni_callback = record
    async with running(peers.tls_server(ctx)) as peer:
        for sni in ("localhost", "bücher.example", "127.0.0.1", None, "bad..name", "x" * 64):
            assert isinstance(await probe(peer.target(sni), FAST), Handshake)
    assert seen == ["localhost", "xn--bcher-kva.example", None, None, None, None]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("example.com", b"example.com"),
        ("Example.COM.", b"Example.COM"),
        ("bücher.example", b"xn--bcher-kva.example"),
        ("::1", None),
        ("10.0.0.1", None),
        ("", None),
        (None, None),
        ("a..b", None),
        ("x" * 64 + ".example", None),
        (".".join(["a" * 60] * 5), None),  # every label fits, the name does not
    ],
)
def test_sni_bytes(name: str | None, expected: bytes | None) -> None:
    assert tls.sni_bytes(name) == expected


async def test_stapled_ocsp_response_is_captured(pki: peers.Pki) -> None:
    now = datetime.now(UTC)
    response = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=pki.leaf.cert,
            issuer=pki.intermediate.cert,
            algorithm=hashes.SHA256(),
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=now,
            next_update=now + timedelta(days=1),
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, pki.intermediate.cert)
        .sign(pki.intermediate.key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    staple = ("-status_file", "{dir}/ocsp.der")
    files = {"ocsp.der": response}
    async with peers.openssl_server(fresh_address(), pki.served, *staple, files=files) as target:
        outcome = await probe(target, FAST)
    assert isinstance(outcome, Handshake), outcome
    assert outcome.ocsp_staple == response
    assert outcome.chain == (pki.leaf.der, pki.intermediate.der)


# --- every failure, provoked for real -------------------------------------------------------


async def test_refused_by_a_closed_port() -> None:
    with peers.closed_port(fresh_address()) as target:
        outcome = await probe(target, FAST)
    assert isinstance(outcome, ScanFailure)
    assert (outcome.kind, outcome.detail) == (
        FailureKind.REFUSED,
        "ECONNREFUSED: Connection refused",
    )
    assert outcome.connected is False


async def test_unreachable() -> None:
    outcome = await probe(Target(address=peers.UNREACHABLE_ADDRESS, port=443), FAST)
    assert isinstance(outcome, ScanFailure)
    assert outcome.kind is FailureKind.UNREACHABLE
    assert outcome.detail.startswith("ENETUNREACH")


async def test_connect_timeout_when_syns_are_dropped() -> None:
    limits = EngineLimits(connect_timeout=0.2, handshake_timeout=2.0, target_deadline=3.0)
    with peers.full_backlog(fresh_address()) as target:
        outcome = await probe(target, limits)
    assert isinstance(outcome, ScanFailure)
    assert outcome.kind is FailureKind.TIMEOUT
    assert "connect timeout" in outcome.detail
    assert outcome.connected is False
    assert 0.2 <= outcome.elapsed_seconds < 1.0


async def test_handshake_timeout_on_a_silent_peer() -> None:
    limits = EngineLimits(connect_timeout=1.0, handshake_timeout=0.2, target_deadline=3.0)
    failure = await failure_from(peers.silent, limits)
    assert failure.kind is FailureKind.TIMEOUT
    assert "handshake unfinished" in failure.detail
    assert "0.2s handshake timeout" in failure.detail
    assert failure.connected is True
    assert 0.2 <= failure.elapsed_seconds < 1.0


async def test_drip_is_cut_off_by_the_target_deadline() -> None:
    limits = EngineLimits(connect_timeout=5.0, handshake_timeout=5.0, target_deadline=0.5)
    start = trio.current_time()
    failure = await failure_from(peers.drip(0.05), limits)
    assert failure.kind is FailureKind.TIMEOUT
    assert "per-target deadline" in failure.detail
    assert 0.5 <= failure.elapsed_seconds < 1.0
    assert trio.current_time() - start < 1.5


@pytest.mark.parametrize(
    ("handler", "kind", "detail"),
    [
        (peers.reset_on_accept, FailureKind.RESET, "ECONNRESET: Connection reset by peer"),
        (peers.hang_up, FailureKind.RESET, "connection closed by the peer after 0 bytes"),
        (peers.speaks(peers.GARBAGE), FailureKind.NOT_TLS, "first bytes from the server: b'\\x00"),
        (
            peers.speaks(peers.SSH_BANNER),
            FailureKind.NOT_TLS,
            "first bytes from the server: b'SSH-2.0-",
        ),
        (
            peers.speaks(peers.HTTP_ANSWER, first_read=True),
            FailureKind.NOT_TLS,
            "first bytes from the server: b'HTTP/1.1 400",
        ),
        (
            peers.speaks(peers.alert_record(40), first_read=True),
            FailureKind.TLS_ALERT,
            "handshake_failure (40)",
        ),
        (
            peers.speaks(peers.alert_record(112), first_read=True),
            FailureKind.TLS_ALERT,
            "unrecognized_name (112)",
        ),
        (
            peers.speaks(peers.alert_record(112, level=1) + peers.EARLY_APPLICATION_DATA, True),
            FailureKind.PROTOCOL_ERROR,  # a warning alert is not why the handshake failed
            "SSL routines: unexpected message",
        ),
        (
            peers.speaks(peers.MALFORMED_RECORD, first_read=True),
            FailureKind.PROTOCOL_ERROR,
            "SSL routines: length mismatch",
        ),
        (
            peers.speaks(peers.SSLV3_SERVER_HELLO, first_read=True),
            FailureKind.PROTOCOL_ERROR,
            "SSL routines: unsupported protocol",
        ),
        (
            peers.speaks(peers.EARLY_APPLICATION_DATA, first_read=True),
            FailureKind.PROTOCOL_ERROR,
            "SSL routines: unexpected message",
        ),
        (
            peers.speaks(peers.OVERSIZED_RECORD, first_read=True),
            FailureKind.PROTOCOL_ERROR,
            "SSL routines: data length too long",
        ),
    ],
    ids=[
        "rst",
        "fin",
        "garbage",
        "ssh",
        "http",
        "alert40",
        "alert112",
        "warning-then-junk",
        "malformed",
        "sslv3",
        "early-data",
        "oversized",
    ],
)
async def test_misbehaving_peers_are_classified(
    handler: peers.Handler, kind: FailureKind, detail: str
) -> None:
    failure = await failure_from(handler)
    assert failure.kind is kind
    assert failure.detail.startswith(detail)
    assert failure.connected is True


async def test_a_slow_start_of_a_valid_header_is_not_mistaken_for_garbage() -> None:
    # Three plausible header bytes, then silence: undecided, so it must wait (and time out).
    limits = EngineLimits(handshake_timeout=0.3, target_deadline=2.0)
    failure = await failure_from(peers.speaks(b"\x16\x03\x01"), limits)
    assert failure.kind is FailureKind.TIMEOUT


async def test_gigantic_chain_is_bounded() -> None:
    big = peers.make_pki(san_count=400)  # a ~16 kB leaf
    ctx = peers.server_context(big.served)
    limits = EngineLimits(max_chain_bytes=8192, handshake_timeout=2.0)
    failure = await failure_from(peers.tls_server(ctx), limits)
    assert failure.kind is FailureKind.CHAIN_TOO_LARGE
    assert "8192" in failure.detail
    # The same server is fine under the default bound: the size was the only problem.
    assert (await handshake_with(peers.tls_server(ctx))).chain[0] == big.leaf.der


# --- the classification table itself --------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (errno.ECONNREFUSED, FailureKind.REFUSED),
        (errno.ENETUNREACH, FailureKind.UNREACHABLE),
        (errno.EHOSTUNREACH, FailureKind.UNREACHABLE),
        (errno.ETIMEDOUT, FailureKind.TIMEOUT),
        (errno.ECONNRESET, FailureKind.RESET),
        (errno.EPIPE, FailureKind.RESET),
    ],
)
def test_errno_classification(code: int, kind: FailureKind) -> None:
    found = tls.os_fault(OSError(code, "whatever the wrapper said"))
    assert found is not None
    assert found.kind is kind
    assert found.detail.startswith(errno.errorcode[code] + ": ")


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENOBUFS, errno.EBADF, None])
def test_local_errors_are_not_network_outcomes(code: int | None) -> None:
    assert tls.os_fault(OSError(code, "local trouble")) is None


def test_unlisted_openssl_reasons_are_protocol_errors() -> None:
    assert tls.fault("some future reason", "x").kind is FailureKind.PROTOCOL_ERROR
    assert tls.alert_name(250) == "unknown_alert (250)"


def test_unknown_minimum_version_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="SSLv3"):
        tls.client_context("SSLv3")
