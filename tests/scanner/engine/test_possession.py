"""Proof of possession: a chain is ``key_proven`` only when the server used the key.

Real stdlib TLS servers on loopback that ask for a client certificate and reject our empty
one: with (EC)DHE the signed key exchange proves the key before the request; with TLS 1.2
static RSA nothing does (a copy of another host's certificate looks exactly the same), so the
chain is kept but marked; TLS 1.3 proves it with CertificateVerify before our handshake ends.
"""

from __future__ import annotations

import ssl

import pytest

from scanner.lab.certgen import Issued, make_ca, make_key, make_leaf
from scanner.models import EngineLimits, Handshake
from tests import peers
from tests.scanner.engine.test_tls import handshake_with

FAST = EngineLimits(connect_timeout=2.0, handshake_timeout=2.0, target_deadline=3.0)


@pytest.fixture(scope="module")
def rsa_chain() -> tuple[Issued, Issued]:
    root = make_ca("certscan possession root")
    leaf = make_leaf(root, cn="localhost", dns_names=["localhost"], key=make_key("rsa"))
    return leaf, root


def _requesting(
    chain: tuple[Issued, Issued], maximum: ssl.TLSVersion, ciphers: str | None
) -> ssl.SSLContext:
    leaf, root = chain
    return peers.server_context(
        [leaf], minimum=ssl.TLSVersion.TLSv1_2, maximum=maximum, ciphers=ciphers, client_ca=root
    )


async def test_static_rsa_chain_is_kept_but_marked_unproven(
    rsa_chain: tuple[Issued, Issued],
) -> None:
    ctx = _requesting(rsa_chain, ssl.TLSVersion.TLSv1_2, "AES128-GCM-SHA256:AES256-GCM-SHA384")
    result = await handshake_with(peers.tls_server(ctx))
    assert isinstance(result, Handshake)
    assert result.status == "client_cert_required"
    assert result.cipher in ("AES128-GCM-SHA256", "AES256-GCM-SHA384")
    assert result.chain[0] == rsa_chain[0].der
    assert result.key_proven is False


@pytest.mark.parametrize(
    ("maximum", "ciphers"),
    [(ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-AES128-GCM-SHA256"), (ssl.TLSVersion.TLSv1_3, None)],
    ids=["tls1.2-ecdhe", "tls1.3"],
)
async def test_a_signed_handshake_proves_the_key(
    rsa_chain: tuple[Issued, Issued], maximum: ssl.TLSVersion, ciphers: str | None
) -> None:
    result = await handshake_with(peers.tls_server(_requesting(rsa_chain, maximum, ciphers)))
    assert result.status == "client_cert_required"
    assert result.key_proven is True


async def test_a_completed_static_rsa_handshake_proves_the_key(
    rsa_chain: tuple[Issued, Issued],
) -> None:
    """No client certificate asked for: the server's Finished proves it decrypted our secret."""
    leaf, _ = rsa_chain
    ctx = peers.server_context([leaf], maximum=ssl.TLSVersion.TLSv1_2, ciphers="AES128-GCM-SHA256")
    result = await handshake_with(peers.tls_server(ctx))
    assert (result.status, result.cipher, result.key_proven) == ("ok", "AES128-GCM-SHA256", True)
