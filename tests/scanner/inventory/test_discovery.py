"""The inventory's schema 3 on both backends: the protocol spoken, alternative chains
(``--all-certs``), endpoints found by SNI discovery, and the migration from schema 2."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from scanner.engine.crew import FOLLOW_UP
from scanner.inventory import tables
from scanner.inventory.store import Inventory, db_url
from scanner.lab import certgen
from scanner.models import CertInfo, Handshake, Outcome, Target
from scanner.parse import parse_certificate

T0 = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)


def parsed(*certs: certgen.Issued) -> tuple[CertInfo, ...]:
    return tuple(parse_certificate(c.der) for c in certs)


def shake(
    n: int, *certs: certgen.Issued, sni: str | None = None, **kw: object
) -> tuple[Outcome, tuple[CertInfo, ...]]:
    outcome = Handshake(
        target=Target(address=f"127.0.9.{n}", port=443, sni=sni),
        started_at=T0,
        chain=tuple(c.der for c in certs),
        tls_version="TLSv1.3",
        cipher="TLS_AES_128_GCM_SHA256",
        **kw,  # type: ignore[arg-type]
    )
    return outcome, parsed(*certs)


def test_protocol_and_alternative_chains_round_trip(
    inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    a, b, inter = pki["a"], pki["b"], pki["inter"]
    alts = ((b.der, inter.der), (pki["root"].der,))
    items = [
        shake(1, a, inter, protocol="smtp", alt_chains=alts),
        shake(2, a, protocol="tls"),
        shake(3, b),  # built by hand: no protocol known
    ]
    scan = inventory.start_scan(spec={"t": 1}, total=3)
    parsed_alts = [(parsed(b, inter), parsed(pki["root"])), (), ()]
    inventory.record_batch(scan, items, watermark=3, alt_chains=parsed_alts)
    records = {r.address: r for r in inventory.latest_endpoints()}
    one = records["127.0.9.1"]
    assert one.protocol == "smtp"
    assert [[c.sha256 for c in alt] for alt in one.alt_chains] == [
        [c.sha256 for c in parsed_alts[0][0]],
        [c.sha256 for c in parsed_alts[0][1]],
    ]
    assert (records["127.0.9.2"].protocol, records["127.0.9.2"].alt_chains) == ("tls", ())
    assert records["127.0.9.3"].protocol is None
    assert inventory.stats()["certificates"] == 4  # alternative chains' certificates stored too


def test_alternative_chains_must_match_what_was_presented(
    inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    scan = inventory.start_scan(spec={"t": 2}, total=1)
    item = shake(1, pki["a"], alt_chains=((pki["b"].der,),))
    with pytest.raises(ValueError, match="alt_chains"):
        inventory.record_batch(
            scan, [item], watermark=1, alt_chains=[(parsed(pki["a"], pki["b"]),)]
        )
    with pytest.raises(ValueError, match="differ in length"):
        inventory.record_batch(scan, [item], watermark=1, alt_chains=[])
    assert inventory.stats()["observations"] == 0


def test_discovered_endpoints_are_stored_without_index_and_not_counted(
    inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    scan = inventory.start_scan(spec={"t": 3}, total=1)
    found = shake(1, pki["b"], sni="b.example")
    planned = shake(1, pki["a"])
    inventory.record_batch(scan, [found, planned], watermark=1, indices=[FOLLOW_UP, 0])
    run = inventory.scan(scan)
    assert run is not None
    assert (run.total, run.done, run.ok, run.watermark) == (1, 1, 1, 1)
    assert len(inventory.latest_endpoints(scan_id=scan)) == 2
    # Resuming reports the discovered endpoint as stored (it has no index to be skipped by).
    assert inventory.resume_scan(scan) == (1, {("127.0.9.1", 443, "b.example")})


def test_a_schema_2_database_gains_the_protocol_column_and_the_alt_table(
    tmp_path: Path, pki: dict[str, certgen.Issued]
) -> None:
    url = db_url(str(tmp_path / "v2.db"))
    with Inventory(url) as inv:
        scan = inv.start_scan(spec={"t": 4}, total=1)
        inv.record_batch(scan, [shake(1, pki["a"], protocol="tls")], watermark=1)
        with inv.engine.begin() as conn:  # back to what schema 2 looked like
            conn.exec_driver_sql("DROP TABLE observation_alt_certificate")
            conn.exec_driver_sql("ALTER TABLE observation DROP COLUMN protocol")
            conn.execute(sa.update(tables.META).values(value="2"))
    with Inventory(url) as inv:
        with inv.engine.connect() as conn:
            version = conn.execute(sa.select(tables.META.c.value)).scalar_one()
            assert version == str(tables.SCHEMA_VERSION)
            assert sa.inspect(conn).has_table("observation_alt_certificate")
        (old,) = inv.latest_endpoints()
        assert (old.protocol, old.alt_chains) == (None, ())
        scan = inv.start_scan(spec={"t": 5}, total=1)
        item = shake(2, pki["a"], protocol="imap", alt_chains=((pki["b"].der,),))
        inv.record_batch(scan, [item], watermark=1, alt_chains=[(parsed(pki["b"]),)])
        new = {r.address: r for r in inv.latest_endpoints()}["127.0.9.2"]
        assert new.protocol == "imap"
        assert len(new.alt_chains) == 1
