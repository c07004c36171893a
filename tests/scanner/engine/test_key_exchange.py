"""The key exchange group each handshake records, against real loopback servers."""

from __future__ import annotations

from itertools import count

import pytest

from scanner.engine.crew import probe
from scanner.lab.certgen import make_key, make_leaf
from scanner.models import EngineLimits, Handshake
from tests import peers
from tests.conftest import require_tool

LIMITS = EngineLimits(connect_timeout=2.0, handshake_timeout=2.0, target_deadline=4.0)
_addresses = count(1)


def fresh_address() -> str:
    n = next(_addresses)
    return f"127.95.{n // 250}.{n % 250 + 1}"


@pytest.fixture(scope="module")
def pki() -> peers.Pki:
    return peers.make_pki()


async def test_a_tls13_handshake_records_its_group(pki: peers.Pki) -> None:
    # The stdlib server (system OpenSSL 3.0) has no ML-KEM: the classical share is chosen.
    ctx = peers.server_context(pki.served)
    async with peers.serve(fresh_address(), peers.tls_server(ctx)) as peer:
        found = await probe(peer.target("localhost"), LIMITS)
    assert isinstance(found, Handshake)
    assert (found.tls_version, found.group) == ("TLSv1.3", "x25519")


@pytest.mark.parametrize(("groups", "name"), [("P-256", "secp256r1"), ("P-384", "secp384r1")])
async def test_the_group_the_server_insists_on_is_recorded(
    pki: peers.Pki, groups: str, name: str
) -> None:
    require_tool("openssl")
    async with peers.openssl_server(fresh_address(), pki.served, "-groups", groups) as target:
        found = await probe(target, LIMITS)
    assert isinstance(found, Handshake)
    assert found.group == name
    assert found.signature_scheme is None  # TLS 1.3 (its CertificateVerify is encrypted)


@pytest.mark.parametrize(
    ("cipher", "sigalgs", "scheme"),
    [
        ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDSA+SHA384", "ecdsa_sha384"),
        ("ECDHE-RSA-AES128-GCM-SHA256", "rsa_pss_rsae_sha256", "rsa_pss_rsae_sha256"),
        ("DHE-RSA-AES128-GCM-SHA256", "RSA+SHA512", "rsa_pkcs1_sha512"),
    ],
)
async def test_a_tls12_handshake_records_the_servers_signature_scheme(
    cipher: str, sigalgs: str, scheme: str
) -> None:
    require_tool("openssl")
    base = peers.make_pki()
    key = "ec" if "ECDSA" in cipher else "rsa"
    leaf = make_leaf(base.intermediate, cn="localhost", dns_names=["localhost"], key=make_key(key))
    options = ("-tls1_2", "-cipher", f"{cipher}:@SECLEVEL=0", "-sigalgs", sigalgs)
    async with peers.openssl_server(fresh_address(), (leaf, base.intermediate), *options) as target:
        found = await probe(target, LIMITS)
    assert isinstance(found, Handshake)
    assert (found.tls_version, found.cipher) == ("TLSv1.2", cipher)
    assert found.signature_scheme == scheme


async def test_static_rsa_key_exchange_has_no_group() -> None:
    require_tool("openssl")
    base = peers.make_pki()
    leaf = make_leaf(
        base.intermediate, cn="localhost", dns_names=["localhost"], key=make_key("rsa")
    )
    served = (leaf, base.intermediate)
    options = ("-tls1_2", "-cipher", "AES128-SHA:@SECLEVEL=0")
    async with peers.openssl_server(fresh_address(), served, *options) as target:
        found = await probe(target, LIMITS)
    assert isinstance(found, Handshake)
    assert (found.tls_version, found.cipher, found.group) == ("TLSv1.2", "AES128-SHA", None)
    assert found.signature_scheme is None  # static RSA signs nothing
