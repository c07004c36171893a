"""Expiry series for every certificate an endpoint presents: the leaf, its intermediates, and
the chains ``--all-certs`` found (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest

from exporters.serve.api import ApiState, Reader, create_app
from reports import assess
from scanner.inventory.store import Inventory, db_url
from scanner.lab import certgen
from scanner.models import Handshake, Target
from scanner.parse import parse_certificate
from tests.exporters.test_prometheus import T0, promtool_accepts, scrape

NOT_AFTER = "certscan_certificate_not_after_timestamp_seconds"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def inventory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Inventory]:
    url = (
        db_url(str(tmp_path / "i.db"))
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    inv = Inventory(str(url))
    try:
        yield inv
    finally:
        inv.close()


def _sha(issued: certgen.Issued) -> str:
    return hashlib.sha256(issued.der).hexdigest()


def test_intermediates_and_alt_leaves_get_series(inventory: Inventory) -> None:
    root = certgen.make_ca()
    inter = certgen.make_ca("certscan test intermediate", issuer=root)
    ecdsa = certgen.make_leaf(inter, cn="dual.example", dns_names=["dual.example"], days=90)
    rsa = certgen.make_leaf(
        inter,
        cn="dual.example",
        key=certgen.make_key("rsa", 2048),
        dns_names=["dual.example"],
        days=3,
    )
    outcome = Handshake(
        target=Target(address="127.0.9.1", port=443, sni=None),
        started_at=T0,
        chain=(ecdsa.der, inter.der),
        tls_version="TLSv1.3",
        cipher="TLS_AES_128_GCM_SHA256",
        alt_chains=((rsa.der, inter.der),),
    )
    parsed = tuple(parse_certificate(d) for d in outcome.chain)
    alt = ((parse_certificate(rsa.der), parse_certificate(inter.der)),)
    scan = inventory.start_scan(spec={}, total=1)
    inventory.record_batch(scan, [(outcome, parsed)], watermark=1, alt_chains=[alt])
    inventory.finish_scan(scan, "finished")

    registry = scrape(inventory)
    base = {"address": "127.0.9.1", "port": "443", "sni": ""}

    def value(cert: certgen.Issued, position: str) -> float | None:
        return registry.get_sample_value(
            NOT_AFTER, base | {"sha256": _sha(cert), "position": position}
        )

    assert value(ecdsa, "leaf") == ecdsa.cert.not_valid_after_utc.timestamp()
    assert value(inter, "intermediate") == inter.cert.not_valid_after_utc.timestamp()
    # The RSA leaf behind the ECDSA default: its own series, so its 3 days can alert.
    assert value(rsa, "alt_leaf") == rsa.cert.not_valid_after_utc.timestamp()
    assert rsa.cert.not_valid_after_utc - ecdsa.cert.not_valid_after_utc < -timedelta(days=80)
    text = generate_latest(registry).decode()
    positions = {
        line.split('position="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith(NOT_AFTER + "{")
    }
    assert positions == {"leaf", "intermediate", "alt_leaf"}
    # One intermediate in both chains is one series, not two.
    assert sum(1 for line in text.splitlines() if line.startswith(NOT_AFTER + "{")) == 3
    promtool_accepts(generate_latest(registry))


async def test_the_certificate_api_finds_alt_leaves_and_intermediates(tmp_path: Path) -> None:
    root = certgen.make_ca()
    inter = certgen.make_ca("certscan test intermediate", issuer=root)
    ecdsa = certgen.make_leaf(inter, cn="dual.example", dns_names=["dual.example"])
    rsa = certgen.make_leaf(
        inter, cn="dual.example", key=certgen.make_key("rsa", 2048), dns_names=["dual.example"]
    )
    outcome = Handshake(
        target=Target(address="127.0.9.1", port=443, sni=None),
        started_at=T0,
        chain=(ecdsa.der, inter.der),
        tls_version="TLSv1.3",
        cipher="TLS_AES_128_GCM_SHA256",
        alt_chains=((rsa.der, inter.der),),
    )
    url = db_url(str(tmp_path / "api.db"))
    inv = Inventory(url)
    try:
        scan = inv.start_scan(spec={}, total=1)
        parsed = tuple(parse_certificate(d) for d in outcome.chain)
        alt = ((parse_certificate(rsa.der), parse_certificate(inter.der)),)
        inv.record_batch(scan, [(outcome, parsed)], watermark=1, alt_chains=[alt])
        inv.finish_scan(scan, "finished")
    finally:
        inv.close()
    state = ApiState(
        reader=Reader(Inventory(url)),
        metrics_reader=Reader(Inventory(url)),
        criteria=assess.load_criteria(None, env={}),
    )
    try:
        transport = httpx.ASGITransport(app=create_app(state))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            got = (await client.get(f"/api/v1/certificates/{_sha(rsa)}")).json()
            assert [(e["chain"], e["position"]) for e in got["endpoints"]] == [(1, 0)]
            both = (await client.get(f"/api/v1/certificates/{_sha(inter)}")).json()
            assert [(e["chain"], e["position"]) for e in both["endpoints"]] == [(0, 1), (1, 1)]
    finally:
        state.reader.close()
        state.metrics_reader.close()
