"""A chain presented without proof of possession is stored marked, drives no hook and makes
no ``key_reuse``: real TLS 1.2 servers on loopback, a real SQLite inventory."""

from __future__ import annotations

import ssl
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from exporters.hooks.config import parse_hooks
from exporters.hooks.runner import plan, presenting
from reports.assess import to_input
from reports.findings import key_reuse
from scanner.engine.crew import probe
from scanner.inventory.store import Inventory
from scanner.lab.certgen import make_ca, make_key, make_leaf
from scanner.models import EngineLimits, Finding, Handshake, Severity
from scanner.parse import parse_certificate
from tests import peers

FAST = EngineLimits(connect_timeout=2.0, handshake_timeout=2.0, target_deadline=3.0)


async def test_an_unproven_chain_drives_no_hook_and_no_key_reuse(tmp_path: Path) -> None:
    root = make_ca("certscan copy root")
    key = make_key("rsa")
    soon = datetime.now(UTC) + timedelta(days=3)
    original = make_leaf(root, cn="localhost", dns_names=["localhost"], key=key, not_after=soon)
    other = make_leaf(root, cn="localhost", dns_names=["localhost"], key=key)
    # The "copy": a TLS 1.2 static-RSA server asking for a client certificate.
    copy = peers.server_context(
        [original], maximum=ssl.TLSVersion.TLSv1_2, ciphers="AES128-GCM-SHA256", client_ca=root
    )
    # A host that really uses the same key, with a different certificate (ECDHE: proven).
    real = peers.server_context(
        [other], maximum=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-RSA-AES128-GCM-SHA256"
    )
    outcomes: list[Handshake] = []
    for address, ctx in (("127.3.7.1", copy), ("127.3.7.2", real)):
        async with peers.serve(address, peers.tls_server(ctx)) as peer:
            outcome = await probe(peer.target("localhost"), FAST)
        assert isinstance(outcome, Handshake), outcome
        outcomes.append(outcome)
    assert [o.key_proven for o in outcomes] == [False, True]

    with Inventory(f"sqlite:///{tmp_path / 'inv.db'}") as inv:
        scan = inv.start_scan(spec={"targets": ["127.3.7.0/24"]}, total=2)
        items = [(o, [parse_certificate(der) for der in o.chain]) for o in outcomes]
        inv.record_batch(scan, items, watermark=2)
        records = inv.latest_endpoints()
    by_address = {r.address: r for r in records}
    assert by_address["127.3.7.1"].key_unproven is True
    assert by_address["127.3.7.2"].key_unproven is False

    assert key_reuse([to_input(r) for r in records]) == {}
    endpoints = {(r.address, r.port, r.sni): r for r in records}
    sha = by_address["127.3.7.1"].chain[0].sha256
    assert sha not in presenting(records)
    hook = parse_hooks(
        {"renew": {"action": "command", "command": [sys.executable, "-c", "pass"]}},
        source="t.toml",
    ).hooks[0]
    expiring = Finding(
        kind="expiring",
        severity=Severity.HIGH,
        message="expires in 3 days",
        address="127.3.7.1",
        port=by_address["127.3.7.1"].port,
        sni="localhost",
        sha256=sha,
    )
    assert plan([hook], [expiring], endpoints, {}, datetime.now(UTC)) == []
