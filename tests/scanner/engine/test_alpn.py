"""ALPN: offered like a browser on HTTPS ports, never on mail/directory ports or after STARTTLS,
and dropped on a second try when a server ends the handshake over the offer."""

from __future__ import annotations

import pytest

from scanner.engine import crew as engine
from scanner.models import EngineLimits, Handshake
from tests.peers import make_pki, openssl_server, serve, server_context, tls_server

LIMITS = EngineLimits(handshake_timeout=3.0, target_deadline=5.0)


async def test_a_server_refusing_the_alpn_offer_is_retried_without_it() -> None:
    pki = make_pki()
    # s_server with an ALPN list that shares nothing with h2/http1.1 ends the handshake with
    # no_application_protocol (120), as nginx's mail proxy does.
    async with openssl_server("127.66.1.1", pki.served, "-alpn", "smtp") as target:
        outcome = await engine.probe(target, LIMITS)
    assert isinstance(outcome, Handshake), outcome
    assert outcome.alpn is None
    assert outcome.chain[0] == pki.leaf.der


async def test_alpn_is_offered_on_web_ports_only(monkeypatch: pytest.MonkeyPatch) -> None:
    pki = make_pki()
    ctx = server_context(pki.served, alpn=["h2", "http/1.1"])
    async with serve("127.66.1.2", tls_server(ctx)) as peer:
        web = await engine.probe(peer.target(), LIMITS)
        monkeypatch.setattr(engine, "_NO_ALPN_PORTS", frozenset({peer.port}))
        mail = await engine.probe(peer.target(), LIMITS)
    assert isinstance(web, Handshake)
    assert web.alpn == "h2"
    assert isinstance(mail, Handshake)
    assert mail.alpn is None  # nothing was offered, so nothing was selected
    assert peer.tally.accepted == 2  # one connection each: no retry needed
