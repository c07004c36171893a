"""The legacy protocol probe (`--probe-protocols`): which of TLS 1.1 / 1.0 an endpoint accepts."""

from __future__ import annotations

import ssl

import pytest

from scanner.engine import crew as engine
from scanner.models import EngineLimits, Handshake
from tests.peers import make_pki, serve, server_context, tls_server

PROBING = EngineLimits(probe_protocols=True, handshake_timeout=2.0, target_deadline=3.0)
LEGACY_CIPHERS = "DEFAULT:@SECLEVEL=0"


@pytest.mark.parametrize(
    ("minimum", "maximum", "negotiated", "legacy"),
    [
        (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3, "TLSv1.3", ()),
        (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_3, "TLSv1.3", ("TLSv1.1", "TLSv1")),
        (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_2, "TLSv1.2", ("TLSv1.1",)),
        (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1, "TLSv1.1", ("TLSv1.1", "TLSv1")),
        (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1, "TLSv1", ("TLSv1",)),
    ],
)
async def test_probe_finds_accepted_legacy_versions(
    minimum: ssl.TLSVersion,
    maximum: ssl.TLSVersion,
    negotiated: str,
    legacy: tuple[str, ...],
) -> None:
    pki = make_pki()
    ctx = server_context(pki.served, minimum=minimum, maximum=maximum, ciphers=LEGACY_CIPHERS)
    async with serve("127.66.0.1", tls_server(ctx)) as peer:
        outcome = await engine.probe(peer.target(), PROBING)
        assert isinstance(outcome, Handshake), outcome
        assert outcome.tls_version == negotiated
        assert outcome.legacy_versions == legacy
        # Never more than the main connection plus two probes.
        assert peer.tally.accepted <= 3


async def test_no_probe_unless_asked() -> None:
    pki = make_pki()
    ctx = server_context(pki.served, minimum=ssl.TLSVersion.TLSv1, ciphers=LEGACY_CIPHERS)
    async with serve("127.66.0.2", tls_server(ctx)) as peer:
        outcome = await engine.probe(peer.target(), EngineLimits())
        assert isinstance(outcome, Handshake)
        assert outcome.legacy_versions is None
        assert peer.tally.accepted == 1
