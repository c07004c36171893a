"""The built-in lab, checked from the outside with plain clients on loopback.

Chains are read with a blocking pyOpenSSL client in a worker thread (the stdlib in Python 3.11
exposes only the leaf); protocol versions are checked with the stdlib through ``trio.SSLStream``.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
import struct
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from OpenSSL import SSL

from scanner.errors import OperationalError, UsageError
from scanner.lab import catalogue as lab_certs
from scanner.lab import certgen
from scanner.lab import servers as lab_module
from scanner.lab.servers import Lab, LabEndpoint, Service, describe, run_lab

TLS_SERVICES = {Service.TLS, Service.TLS10_ONLY, Service.CLIENT_CERT}


@pytest.fixture
async def lab(nursery: trio.Nursery) -> Lab:
    started: Lab = await nursery.start(functools.partial(run_lab, port=0))
    return started


@dataclass
class Probe:
    chain: list[x509.Certificate]
    error: str | None
    certificate_requested: bool
    version: str | None


def _probe(address: str, port: int, max_version: int = 0) -> Probe:
    """A blocking TLS handshake that accepts anything and records what the server sent."""
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_cipher_list(b"ALL:@SECLEVEL=0")
    context.set_min_proto_version(SSL.TLS1_VERSION)
    if max_version:
        context.set_max_proto_version(max_version)
    states: list[bytes] = []
    context.set_info_callback(lambda conn, where, ret: states.append(conn.get_state_string()))
    with socket.create_connection((address, port), timeout=5) as sock:
        sock.settimeout(None)  # pyOpenSSL needs a blocking socket; bound reads another way
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 5, 0))
        conn = SSL.Connection(context, sock)
        conn.set_connect_state()
        error = None
        try:
            conn.do_handshake()
        except SSL.Error as exc:
            error = str(exc)
        return Probe(
            chain=conn.get_peer_cert_chain(as_cryptography=True) or [],
            error=error,
            certificate_requested=any(b"certificate request" in s for s in states if s),
            version=conn.get_protocol_version_name(),
        )


async def probe(endpoint: LabEndpoint, max_version: int = 0) -> Probe:
    return await trio.to_thread.run_sync(_probe, endpoint.address, endpoint.port, max_version)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    key = issuer.public_key()
    algorithm = cert.signature_hash_algorithm
    assert algorithm is not None
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)
    else:
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
    return cert.issuer == issuer.subject


def _close(actual: datetime, expected: datetime) -> bool:
    return abs(actual - expected) < timedelta(minutes=2)


# --- catalogue (no network) -------------------------------------------------------------------


def test_catalogue_is_consecutive_loopback_on_one_port() -> None:
    built = lab_certs.build_lab(now=datetime.now(UTC))
    addresses = [e.address for e in built.endpoints]
    assert addresses == [f"127.77.0.{i}" for i in range(1, len(lab_certs.CATALOGUE) + 1)]
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network("127.0.0.0/8") for a in addresses)
    assert built.ports == (8443,)
    assert built.targets_spec() == [f"127.77.0.1-127.77.0.{len(addresses)}"]
    names = [e.name for e in built.endpoints]
    assert len(set(names)) == len(names) >= 13
    assert {e.expect for e in built.endpoints} == {
        "ok",
        "client_cert_required",
        "not_tls",
        "timeout",
    }
    for endpoint in built.endpoints:
        assert bool(endpoint.chain) == (endpoint.service in TLS_SERVICES)


@pytest.mark.parametrize("base", ["10.0.0.1", "192.0.2.1", "::1", "127.255.255.250", "nonsense"])
def test_catalogue_refuses_addresses_outside_loopback(base: str) -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.0/8|not an IPv4"):
        lab_certs.build_lab(base_address=base, now=datetime.now(UTC))


def test_endpoint_refuses_non_loopback_address() -> None:
    with pytest.raises(ValueError, match="outside 127"):
        LabEndpoint(
            name="x", address="10.1.2.3", port=1, description="", expect="ok", service=Service.HANG
        )


def test_sha1_leaf_is_really_signed_with_sha1() -> None:
    root = certgen.make_ca()
    with pytest.raises(ValueError, match="RSA"):
        certgen.make_sha1_leaf(root)
    issuer = certgen.make_ca("rsa", issuer=root, key=certgen.make_key("rsa", 2048))
    leaf = certgen.make_sha1_leaf(issuer, ip_addresses=["127.0.0.1"])
    assert isinstance(leaf.cert.signature_hash_algorithm, hashes.SHA1)
    assert leaf.cert.signature_algorithm_oid.dotted_string == "1.2.840.113549.1.1.5"
    assert _signed_by(leaf.cert, issuer.cert)
    assert x509.load_der_x509_certificate(leaf.der).public_key() == leaf.key.public_key()


async def test_run_lab_refuses_a_public_base_address() -> None:
    with pytest.raises(UsageError, match=r"127\.0\.0\.0/8"):
        await run_lab(base_address="10.0.0.1", port=0)


# --- the running lab --------------------------------------------------------------------------


async def test_tls_endpoints_present_the_catalogue_chain(lab: Lab) -> None:
    tls = [e for e in lab.endpoints if e.service in TLS_SERVICES]
    assert len(tls) == 12
    for endpoint in tls:
        result = await probe(endpoint)
        assert [_der(c) for c in result.chain] == list(endpoint.chain_der), endpoint.name
        leaf = result.chain[0]
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ips = [str(ip) for ip in names.get_values_for_type(x509.IPAddress)]
        dns = names.get_values_for_type(x509.DNSName)
        assert dns == [endpoint.dns_name]
        if endpoint.name == "hostname-mismatch":
            assert endpoint.address not in ips
            assert endpoint.dns_name == "elsewhere.lab.certscan.test"
        else:
            assert ips == [endpoint.address]
            assert endpoint.dns_name == f"{endpoint.name}.lab.certscan.test"
        for cert, issuer in zip(result.chain, result.chain[1:], strict=False):
            assert _signed_by(cert, issuer), endpoint.name
        if endpoint.name == "self-signed":
            assert len(result.chain) == 1
            assert _signed_by(leaf, leaf)
        else:
            assert len(result.chain) == 2
            assert _signed_by(result.chain[-1], lab.ca.cert), endpoint.name


async def test_certificate_properties_as_served(lab: Lab) -> None:
    now = datetime.now(UTC)
    served = {e.name: (await probe(e)).chain[0] for e in lab.endpoints if e.chain}
    day = timedelta(days=1)
    assert _close(served["expiring"].not_valid_after_utc, now + 5 * day)
    assert _close(served["expired"].not_valid_after_utc, now - 10 * day)
    assert _close(served["not-yet-valid"].not_valid_before_utc, now + 30 * day)
    for name in ("healthy-rsa", "healthy-ecdsa", "weak-key", "sha1-signature"):
        cert = served[name]
        assert cert.not_valid_before_utc < now < cert.not_valid_after_utc, name
    weak = served["weak-key"].public_key()
    assert isinstance(weak, rsa.RSAPublicKey)
    assert weak.key_size == 1024
    assert isinstance(served["sha1-signature"].signature_hash_algorithm, hashes.SHA1)
    assert isinstance(served["healthy-rsa"].signature_hash_algorithm, hashes.SHA256)
    healthy_rsa = served["healthy-rsa"].public_key()
    assert isinstance(healthy_rsa, rsa.RSAPublicKey)
    assert healthy_rsa.key_size == 2048
    healthy_ec = served["healthy-ecdsa"].public_key()
    assert isinstance(healthy_ec, ec.EllipticCurvePublicKey)
    assert healthy_ec.curve.name == "secp256r1"
    self_signed = served["self-signed"]
    assert self_signed.subject == self_signed.issuer


def _client_context(version: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = version
        context.maximum_version = version
    return context


async def _stdlib_version(endpoint: LabEndpoint, version: ssl.TLSVersion) -> str | None:
    stream = await trio.open_tcp_stream(endpoint.address, endpoint.port)
    tls = trio.SSLStream(stream, _client_context(version))
    try:
        with trio.fail_after(5):
            await tls.do_handshake()
        negotiated: str | None = tls.version()
        return negotiated
    finally:
        await trio.aclose_forcefully(tls)


async def test_legacy_endpoint_speaks_tls10_only(lab: Lab) -> None:
    legacy = lab.by_name("legacy-tls10")
    assert await _stdlib_version(legacy, ssl.TLSVersion.TLSv1) == "TLSv1"
    with pytest.raises(trio.BrokenResourceError):
        await _stdlib_version(legacy, ssl.TLSVersion.TLSv1_2)
    # while a modern endpoint negotiates TLS 1.3
    assert await _stdlib_version(lab.by_name("healthy-rsa"), ssl.TLSVersion.TLSv1_3) == "TLSv1.3"


@pytest.mark.parametrize("max_version", [SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION])
async def test_client_cert_endpoint_requests_a_certificate(lab: Lab, max_version: int) -> None:
    endpoint = lab.by_name("client-cert")
    result = await probe(endpoint, max_version)
    assert result.certificate_requested
    assert [_der(c) for c in result.chain] == list(endpoint.chain_der)
    if max_version == SSL.TLS1_2_VERSION:
        assert result.error is not None  # refused for want of a certificate
    healthy = await probe(lab.by_name("healthy-ecdsa"), max_version)
    assert not healthy.certificate_requested
    assert healthy.error is None


async def test_tls_endpoint_answers_http(lab: Lab) -> None:
    endpoint = lab.by_name("healthy-ecdsa")
    stream = await trio.open_tcp_stream(endpoint.address, endpoint.port)
    async with trio.SSLStream(stream, _client_context(ssl.TLSVersion.TLSv1_3)) as tls:
        with trio.fail_after(5):
            await tls.send_all(b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n")
            answer = await tls.receive_some(4096)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"healthy-ecdsa" in answer


async def test_banner_endpoint_speaks_plaintext(lab: Lab) -> None:
    endpoint = lab.by_name("not-tls")
    async with await trio.open_tcp_stream(endpoint.address, endpoint.port) as stream:
        with trio.fail_after(5):
            data = await stream.receive_some(100)
    assert data == b"SSH-2.0-certscan-lab\r\n"
    assert data[0] != 0x16  # not a TLS handshake record


async def test_hang_endpoint_sends_nothing(lab: Lab) -> None:
    endpoint = lab.by_name("hang")
    async with await trio.open_tcp_stream(endpoint.address, endpoint.port) as stream:
        await stream.send_all(b"\x16\x03\x01\x00\x05hello")
        with trio.move_on_after(0.3) as scope:
            await stream.receive_some(100)
        assert scope.cancelled_caught


async def test_connections_are_bounded_in_time(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lab_module, "HANG_SECONDS", 0.2)
    started: Lab = await nursery.start(functools.partial(run_lab, port=0))
    endpoint = started.by_name("hang")
    async with await trio.open_tcp_stream(endpoint.address, endpoint.port) as stream:
        with trio.fail_after(3):
            assert await stream.receive_some(100) == b""


async def test_connections_per_endpoint_are_capped(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lab_module, "MAX_CONNECTIONS_PER_ENDPOINT", 1)
    started: Lab = await nursery.start(functools.partial(run_lab, port=0))
    endpoint = started.by_name("not-tls")
    async with await trio.open_tcp_stream(endpoint.address, endpoint.port) as first:
        with trio.fail_after(3):
            assert await first.receive_some(100) == lab_certs.BANNER
        async with await trio.open_tcp_stream(endpoint.address, endpoint.port) as second:
            with trio.fail_after(3):
                assert await second.receive_some(100) == b""


async def test_busy_port_is_a_clear_operational_error(lab: Lab) -> None:
    taken = lab.endpoints[0]
    with pytest.raises(OperationalError, match=r"already in use.*--port") as info:
        await run_lab(base_address=taken.address, port=taken.port)
    assert f"{taken.address}:{taken.port}" in str(info.value)


async def test_stopping_the_lab_closes_its_ports() -> None:
    async with trio.open_nursery() as nursery:
        started: Lab = await nursery.start(functools.partial(run_lab, port=0))
        nursery.cancel_scope.cancel()
    endpoint = started.endpoints[0]
    with trio.socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        await sock.connect((endpoint.address, endpoint.port))


async def test_describe_lists_every_endpoint(lab: Lab) -> None:
    rows = describe(lab)
    assert [r[1] for r in rows] == [e.name for e in lab.endpoints]
    assert rows[0] == (
        f"{lab.endpoints[0].address}:{lab.endpoints[0].port}",
        "healthy-rsa",
        lab.endpoints[0].description,
    )
    assert all(e.port > 0 for e in lab.endpoints)
    assert set(lab.ports) == {e.port for e in lab.endpoints}
    assert [t.port for t in lab.targets()] == [e.port for e in lab.endpoints]
