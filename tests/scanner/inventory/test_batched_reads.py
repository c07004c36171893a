"""Reads that judge a sweep batch by batch (``scan_batches``, ``leaf_runs`` of an id range)
give the same answer as the whole-inventory reads, on each backend. Fixtures:
tests/scanner/conftest.py (``inventory`` on SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from scanner.inventory.store import Inventory
from scanner.models import CertInfo, Finding, Handshake, Outcome, Severity, Target

T0 = datetime(2031, 5, 1, 8, 0, tzinfo=UTC)


def leaf(n: int) -> CertInfo:
    der = b"batched-read-test-%d" % n
    return CertInfo(
        der=der,
        sha256=hashlib.sha256(der).hexdigest(),
        subject=f"CN=e{n}.test",
        subject_cn=f"e{n}.test",
        issuer="CN=test CA",
        issuer_cn="test CA",
        serial=f"{n:x}",
        version=3,
        not_before=T0 - timedelta(days=10),
        not_after=T0 + timedelta(days=n),
        san_dns=(f"e{n}.test",),
        key_type="EC",
        key_bits=256,
        key_curve="secp256r1",
        signature_algorithm="ecdsa-with-SHA256",
        signature_hash="sha256",
        is_ca=False,
    )


def sweep(inv: Inventory, hosts: range, *, at: datetime, cert_of: int = 0) -> int:
    items: list[tuple[Outcome, tuple[CertInfo, ...]]] = []
    for n in hosts:
        info = leaf(n + cert_of)
        shake = Handshake(
            target=Target(address=f"127.0.9.{n}", port=443),
            started_at=at,
            chain=(info.der,),
            tls_version="TLSv1.3",
            cipher="TLS_AES_128_GCM_SHA256",
        )
        items.append((shake, (info,)))
    scan = inv.start_scan(spec={"hosts": len(items), "at": at.isoformat()}, total=len(items))
    inv.record_batch(scan, items, watermark=len(items))
    inv.finish_scan(scan, "finished")
    return scan


def test_scan_batches_page_the_endpoints_whose_latest_is_the_scans(inventory: Inventory) -> None:
    first = sweep(inventory, range(1, 26), at=T0)
    # A later scan observes every third endpoint again: those are no longer the first's.
    sweep(inventory, range(3, 26, 3), at=T0 + timedelta(hours=1))
    batches = list(inventory.scan_batches(first, size=4))
    assert all(len(b) <= 4 for b in batches)
    seen = [r.address for b in batches for r in b]
    assert len(seen) == len(set(seen))
    assert sorted(seen) == sorted(f"127.0.9.{n}" for n in range(1, 26) if n % 3)
    assert all(r.scan_id == first for b in batches for r in b)


def test_leaf_runs_of_some_endpoints_are_those_of_the_whole_inventory(
    inventory: Inventory,
) -> None:
    sweep(inventory, range(1, 13), at=T0)
    sweep(inventory, range(1, 13), at=T0 + timedelta(days=1), cert_of=100)  # renewed
    sweep(inventory, range(1, 13), at=T0 + timedelta(days=2), cert_of=100)  # same again
    everything = inventory.leaf_runs()
    records = inventory.latest_endpoints()
    ids = sorted(r.endpoint_id for r in records if r.endpoint_id is not None)
    chosen = set(ids[4:8])
    part = inventory.leaf_runs(endpoint_ids=sorted(chosen))
    inside = {(r.address, r.port, r.sni) for r in records if r.endpoint_id in chosen}
    assert set(part) == inside
    assert len(inside) == 4
    assert all(part[k] == everything[k] for k in inside)
    assert all(len(part[k]) == 2 for k in inside)  # two runs: the first leaf, the renewal


def test_findings_pages_cover_every_finding_once_most_severe_first(inventory: Inventory) -> None:
    scan = sweep(inventory, range(1, 8), at=T0)
    levels = [Severity.LOW, Severity.CRITICAL, Severity.INFO, Severity.HIGH]
    found = [
        Finding(
            kind=f"kind{k}",
            severity=levels[(n + k) % len(levels)],
            message=f"m{n}.{k}",
            address=f"127.0.9.{n}",
            port=443,
            sni=None,
        )
        for n in range(1, 8)
        for k in range(3)
    ]
    evaluated = [(f"127.0.9.{n}", 443, None) for n in range(1, 8)]
    inventory.record_findings(scan, found, evaluated=evaluated, now=T0)
    pages, after = [], None
    while True:
        page, after = inventory.findings_page(after=after, limit=4)
        pages.append(page)
        if after is None:
            break
    assert all(len(p) == 4 for p in pages[:-1])
    listed = [r for p in pages for r in p]
    assert sorted(r.id for r in listed) == sorted(r.id for r in inventory.findings())
    assert [r.severity for r in listed] == sorted((r.severity for r in listed), reverse=True)
    high = inventory.findings_page(min_severity=Severity.HIGH, limit=100)[0]
    assert {r.severity for r in high} == {Severity.HIGH, Severity.CRITICAL}
    tally = inventory.findings_tally(min_severity=Severity.HIGH)
    assert tally == {"open": len(high), "endpoints": 7, "resolved": 0}
