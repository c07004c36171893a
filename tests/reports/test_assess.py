"""reports.assess: stored observations judged in context, filters, and the findings lifecycle
after a sweep, on a real SQLite inventory. Certificates are built in code; no network."""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from reports import assess
from reports.model import EndpointKey, EndpointView
from reports.output import build_report
from reports.policy import Policy
from reports.render import get_renderer
from reports.render.json import load_schema
from reports.trust import TrustStore
from scanner.errors import UsageError
from scanner.inventory.store import EndpointRecord, Inventory
from scanner.lab import certgen
from scanner.lab.certgen import Issued
from scanner.models import (
    CertInfo,
    FailureKind,
    Finding,
    Handshake,
    Outcome,
    ScanFailure,
    Severity,
    Target,
)
from scanner.parse import parse_certificate

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
Item = tuple[Outcome, tuple[CertInfo, ...]]


class Pki:
    """A root (the trust anchor), an intermediate, and leaves issued for 127.0.9.n."""

    def __init__(self) -> None:
        self.root = certgen.make_ca("assess root", not_before=NOW - 400 * DAY)
        self.inter = certgen.make_ca("assess CA", issuer=self.root, not_before=NOW - 400 * DAY)
        self.criteria = assess.Criteria(
            # 90-day leaves in 2030 exceed that year's 47-day CA/B Forum limit: these tests are
            # about other rules (the limit is tested in test_findings), so pin the old one.
            policy=Policy(max_leaf_validity_days=398),
            trust=TrustStore.from_pem(self.root.cert_pem, mozilla=False),
        )

    def leaf(self, n: int, *, days_left: float = 60, **kw: Any) -> Issued:
        end = NOW + days_left * DAY
        return certgen.make_leaf(
            self.inter,
            cn=f"host{n}",
            dns_names=(f"host{n}.example",),
            ip_addresses=(address(n),),
            not_before=end - 90 * DAY,
            not_after=end,
            **kw,
        )


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


def address(n: int) -> str:
    return f"127.0.{9 + n // 250}.{1 + n % 250}"


def chain_of(pki: Pki, leaf: Issued) -> tuple[CertInfo, ...]:
    return (parse_certificate(leaf.der), parse_certificate(pki.inter.der))


def record(
    pki: Pki,
    n: int,
    leaf: Issued | None = None,
    *,
    scan_id: int = 1,
    legacy: tuple[str, ...] | None = None,
) -> EndpointRecord:
    return EndpointRecord(
        address=address(n),
        port=443,
        sni=None,
        status="ok",
        error=None,
        tls_version="TLSv1.3",
        cipher="TLS_AES_128_GCM_SHA256",
        alpn=None,
        observed_at=NOW - DAY,
        scan_id=scan_id,
        chain=chain_of(pki, leaf or pki.leaf(n)),
        legacy_versions=legacy,
        connected=True,
    )


def kinds(view: EndpointView) -> set[str]:
    return {f.kind for f in view.findings}


# --- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30d", 30 * DAY), ("12h", timedelta(hours=12)), ("2w", 14 * DAY), (" 7D ", 7 * DAY)],
)
def test_windows(text: str, expected: timedelta) -> None:
    assert assess.parse_window(text) == expected


@pytest.mark.parametrize("text", ["", "30", "d", "-3d", "3x", "1.5d", "30 days", "9999999d"])
def test_bad_windows_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="--expiring-within: expected a duration"):
        assess.parse_window(text)


def test_windows_are_bounded() -> None:
    with pytest.raises(UsageError, match="at most 36600 days"):
        assess.parse_window("999999w")


def test_kinds_repeat_and_split_on_commas() -> None:
    assert assess.parse_kinds(["expired,weak_key", " expiring ", ""]) == {
        "expired",
        "weak_key",
        "expiring",
    }
    with pytest.raises(UsageError, match="did you mean 'expired'"):
        assess.parse_kinds(["expird"])


def test_severity_names() -> None:
    assert assess.parse_severity("HIGH", option="--fail-on") is Severity.HIGH
    with pytest.raises(UsageError, match="--fail-on: expected one of critical, high"):
        assess.parse_severity("severe", option="--fail-on")


# --- judging in context (pure) -------------------------------------------------------------


def test_context_key_reuse_previous_leaf_and_probe(pki: Pki) -> None:
    key = certgen.make_key("ec")
    a = record(pki, 1, pki.leaf(1, key=key), legacy=("TLSv1",))
    b = record(pki, 2, pki.leaf(2, key=key), legacy=())
    c = record(pki, 3, pki.leaf(3, key=key))  # not shown: still counts for key reuse
    stale_a = record(pki, 1, pki.leaf(1, key=key))  # another record of a shown endpoint: ignored
    healthy = record(pki, 4)
    previous: dict[EndpointKey, str] = {(address(4), 443, None): "00" * 32}
    views = assess.assess(
        [a, b, healthy],
        criteria=pki.criteria,
        now=NOW,
        previous=previous,
        others=[c, stale_a],
    )
    assert [v.address for v in views] == [address(1), address(2), address(4)]
    by = {v.address: v for v in views}
    assert kinds(by[address(1)]) == {"key_reuse", "legacy_protocol"}
    assert kinds(by[address(2)]) == {"key_reuse"}  # probed, accepted nothing legacy
    assert kinds(by[address(4)]) == {"certificate_changed"}
    reuse = next(f for f in by[address(1)].findings if f.kind == "key_reuse")
    assert address(2) in reuse.message
    assert address(3) in reuse.message
    # Without the context endpoint, 1 and 2 still share; 4 alone shares with nobody.
    alone = assess.assess([a], criteria=pki.criteria, now=NOW, previous={})
    assert kinds(alone[0]) == {"legacy_protocol"}


def test_policy_changes_the_verdict_without_new_data(pki: Pki) -> None:
    soon = record(pki, 5, pki.leaf(5, days_left=20))
    (view,) = assess.assess([soon], criteria=pki.criteria, now=NOW, previous={})
    assert [(f.kind, f.severity) for f in view.findings] == [("expiring", Severity.HIGH)]
    lenient = replace(
        pki.criteria,
        policy=Policy(expiring_high_days=10, expiring_critical_days=3, max_leaf_validity_days=398),
    )
    (view,) = assess.assess([soon], criteria=lenient, now=NOW, previous={})
    assert view.findings == ()


def _finding(kind: str, severity: Severity) -> Finding:
    return Finding(kind=kind, severity=severity, message=kind, address="x", port=1, sni=None)


def _view(name: str, not_after: datetime | None, *found: Finding) -> EndpointView:
    chain = () if not_after is None else (CertInfo(der=b"", sha256=name * 64, not_after=not_after),)
    return EndpointView(
        address=name,
        port=443,
        sni=None,
        status="ok",
        error=None,
        tls_version=None,
        cipher=None,
        observed_at=NOW,
        scan_id=1,
        chain=chain,
        findings=found,
    )


def test_filters() -> None:
    high = _finding("weak_key", Severity.HIGH)
    low = _finding("chain_order", Severity.LOW)
    crit = _finding("expired", Severity.CRITICAL)
    views = [
        _view("a", NOW + 100 * DAY, high, low),
        _view("b", NOW - DAY, crit),
        _view("c", NOW + 10 * DAY),
        _view("d", None),
    ]
    everything = assess.select(views, assess.ReportFilter(), now=NOW)
    assert everything == tuple(views)
    severe = assess.select(views, assess.ReportFilter(severity=Severity.HIGH), now=NOW)
    assert [(v.address, [f.kind for f in v.findings]) for v in severe] == [
        ("a", ["weak_key"]),
        ("b", ["expired"]),
    ]
    by_kind = assess.select(views, assess.ReportFilter(kinds=frozenset({"chain_order"})), now=NOW)
    assert [(v.address, v.findings) for v in by_kind] == [("a", (low,))]
    soon = assess.select(views, assess.ReportFilter(expiring_within=30 * DAY), now=NOW)
    assert [v.address for v in soon] == ["b", "c"]  # expired counts as within the window
    assert assess.failing(severe, Severity.CRITICAL)
    assert not assess.failing(by_kind, Severity.MEDIUM)
    assert assess.failing(by_kind, Severity.LOW)
    assert not assess.failing(views, None)


# --- the lifecycle on a real inventory -----------------------------------------------------------


def shake(pki: Pki, n: int, leaf: Issued, *, at: datetime, legacy: Any = None) -> Item:
    chain = (leaf, pki.inter)
    outcome = Handshake(
        target=Target(address=address(n), port=443),
        started_at=at,
        chain=tuple(c.der for c in chain),
        tls_version="TLSv1.3",
        cipher="TLS_AES_128_GCM_SHA256",
        legacy_versions=legacy,
    )
    return outcome, tuple(parse_certificate(c.der) for c in chain)


def failure(n: int, *, at: datetime, connected: bool) -> Item:
    kind = FailureKind.TLS_ALERT if connected else FailureKind.REFUSED
    target = Target(address=address(n), port=443)
    return ScanFailure(target=target, started_at=at, kind=kind, detail="x", connected=connected), ()


def sweep(inv: Inventory, items: list[Item]) -> int:
    scan = inv.start_scan(spec={"n": len(items), "t": time.monotonic()}, total=len(items))
    inv.record_batch(scan, items, watermark=len(items))
    inv.finish_scan(scan, "finished")
    return scan


def test_lifecycle_across_two_sweeps(pki: Pki, tmp_path: Path) -> None:
    expired = pki.leaf(1, days_left=-3)
    weak = pki.leaf(2, key=certgen.make_key("rsa", 1024))
    with Inventory(str(tmp_path / "inv.db")) as inv:
        first = sweep(
            inv,
            [
                shake(pki, 1, expired, at=NOW - 2 * DAY),
                shake(pki, 2, weak, at=NOW - 2 * DAY),
                failure(3, at=NOW - 2 * DAY, connected=False),
            ],
        )
        judged = assess.record_scan(inv, first, criteria=pki.criteria, now=NOW - 2 * DAY)
        assert [v.address for v in judged.views] == [address(1), address(2)]  # refused: not shown
        assert (judged.changes.new, judged.changes.resolved) == (2, 0)

        second = sweep(
            inv,
            [
                shake(pki, 1, pki.leaf(1), at=NOW - DAY),  # replaced by a healthy certificate
                failure(2, at=NOW - DAY, connected=True),  # down this time: findings stay open
            ],
        )
        judged = assess.record_scan(inv, second, criteria=pki.criteria, now=NOW - DAY)
        assert {v.address: kinds(v) for v in judged.views} == {
            address(1): {"certificate_changed"},
            address(2): set(),  # accepted the connection: shown, but not judged
        }
        assert (judged.changes.new, judged.changes.resolved) == (1, 1)
        rows = {(r.address, r.kind): r for r in inv.findings(open_only=False)}
    assert rows[(address(1), "expired")].resolved_at == NOW - DAY
    assert rows[(address(1), "certificate_changed")].resolved_at is None
    assert rows[(address(2), "weak_key")].resolved_at is None
    assert rows[(address(2), "weak_key")].last_seen == NOW - 2 * DAY


def test_report_of_one_scan_uses_every_endpoint_for_key_reuse(pki: Pki, tmp_path: Path) -> None:
    key = certgen.make_key("ec")
    with Inventory(str(tmp_path / "inv.db")) as inv:
        first = sweep(inv, [shake(pki, 1, pki.leaf(1, key=key), at=NOW - 2 * DAY)])
        second = sweep(inv, [shake(pki, 2, pki.leaf(2, key=key), at=NOW - DAY)])
        one = assess.read_views(inv, criteria=pki.criteria, now=NOW, scan_id=second)
        every = assess.read_views(inv, criteria=pki.criteria, now=NOW)
        assert assess.scan_info(inv, first).id == first
        with pytest.raises(UsageError, match="no scan 99"):
            assess.scan_info(inv, 99)
    assert [(v.address, kinds(v)) for v in one] == [(address(2), {"key_reuse"})]
    assert sorted((v.address, tuple(kinds(v))) for v in every) == [
        (address(1), ("key_reuse",)),
        (address(2), ("key_reuse",)),
    ]


def test_recording_1000_endpoints_twice(pki: Pki, tmp_path: Path) -> None:
    count = 1000
    items = [shake(pki, n, pki.leaf(n, days_left=5 + n % 60), at=NOW - DAY) for n in range(count)]
    with Inventory(str(tmp_path / "inv.db")) as inv:
        scan = sweep(inv, items)
        start = time.perf_counter()
        judged = assess.record_scan(inv, scan, criteria=pki.criteria, now=NOW)
        first = time.perf_counter() - start
        start = time.perf_counter()
        again = assess.record_scan(inv, scan, criteria=pki.criteria, now=NOW + DAY)
        second = time.perf_counter() - start
    print(f"record_scan over {count} endpoints: {first:.3f} s, again {second:.3f} s")
    assert len(judged.views) == count
    expiring = sum(1 for v in judged.views if "expiring" in kinds(v))
    assert judged.changes.new == expiring > 0
    assert again.changes.still_open >= expiring


# --- alternative chains (--all-certs) ------------------------------------------------------------


def dual(pki: Pki, n: int, *, rsa_days_left: float, scan_id: int = 1) -> EndpointRecord:
    """Endpoint ``n`` holding a healthy ECDSA leaf and an RSA leaf (its alternative chain)."""
    rsa = pki.leaf(n, days_left=rsa_days_left, key=certgen.make_key("rsa", 2048))
    return replace(record(pki, n, scan_id=scan_id), alt_chains=(chain_of(pki, rsa),))


def test_alternative_chain_is_judged_and_carried(pki: Pki) -> None:
    endpoint = dual(pki, 20, rsa_days_left=5)
    rsa_leaf = endpoint.alt_chains[0][0]
    (view,) = assess.assess([endpoint], criteria=pki.criteria, now=NOW, previous={})
    assert view.alt_chains == endpoint.alt_chains
    assert [(f.kind, f.severity, f.sha256) for f in view.findings] == [
        ("expiring", Severity.CRITICAL, rsa_leaf.sha256)
    ]
    assert view.findings[0].message.startswith("alternative chain 1: leaf 'host20' expires")
    # Without the alternative chain the endpoint is healthy.
    (main_only,) = assess.assess(
        [replace(endpoint, alt_chains=())], criteria=pki.criteria, now=NOW, previous={}
    )
    assert main_only.findings == ()
    # --expiring-within looks at every chain.
    window = assess.ReportFilter(expiring_within=10 * DAY)
    assert assess.select([view], window, now=NOW) == (view,)
    assert assess.select([main_only], window, now=NOW) == ()


def test_alternative_chain_does_not_repeat_findings(pki: Pki) -> None:
    soon = record(pki, 21, pki.leaf(21, days_left=5))
    (plain,) = assess.assess([soon], criteria=pki.criteria, now=NOW, previous={})
    twice = replace(soon, alt_chains=(soon.chain, soon.chain))
    (view,) = assess.assess([twice], criteria=pki.criteria, now=NOW, previous={})
    assert [f.kind for f in plain.findings] == ["expiring"]
    assert view.findings == plain.findings  # same (kind, certificate): reported once


def test_alternative_leaf_takes_part_in_key_reuse(pki: Pki) -> None:
    key = certgen.make_key("rsa", 2048)
    main = record(pki, 22, pki.leaf(22, key=key))
    other = replace(record(pki, 23), alt_chains=(chain_of(pki, pki.leaf(23, key=key)),))
    views = assess.assess([main, other], criteria=pki.criteria, now=NOW, previous={})
    reuse = {v.address: [f for f in v.findings if f.kind == "key_reuse"] for v in views}
    assert [f.sha256 for f in reuse[address(22)]] == [main.chain[0].sha256]
    assert [f.sha256 for f in reuse[address(23)]] == [other.alt_chains[0][0].sha256]
    assert reuse[address(23)][0].message.startswith("alternative chain 1:")


def test_alternative_chain_in_every_report_format(pki: Pki) -> None:
    endpoint = dual(pki, 24, rsa_days_left=5)
    rsa_leaf = endpoint.alt_chains[0][0]
    views = assess.assess([endpoint], criteria=pki.criteria, now=NOW, previous={})
    report = build_report(views, generated_at=NOW, scan=None)
    assert report.summary.certificates == 3  # ECDSA leaf, RSA leaf, the shared intermediate
    assert report.summary.next_expiry is not None
    assert report.summary.next_expiry.sha256 == rsa_leaf.sha256
    served = {
        u.cert.sha256: [(p.position, p.chain) for p in u.served_at] for u in report.certificates
    }
    assert served[rsa_leaf.sha256] == [(0, 1)]
    assert served[endpoint.chain[1].sha256] == [(1, 0), (1, 1)]

    document = json.loads(get_renderer("json").render(report))
    jsonschema.Draft202012Validator(load_schema()).validate(document)
    (shown,) = document["endpoints"]
    assert [[c["sha256"] for c in alt] for alt in shown["alt_chains"]] == [
        [c.sha256 for c in endpoint.alt_chains[0]]
    ]
    assert [f["sha256"] for f in shown["findings"]] == [rsa_leaf.sha256]
    placements = {c["sha256"]: c["served_at"] for c in document["certificates"]}
    assert placements[rsa_leaf.sha256] == [
        {"address": address(24), "port": 443, "sni": None, "position": 0, "chain": 1}
    ]

    html = get_renderer("html").render(report).decode("utf-8")
    assert "alternative chain 1: leaf &#39;host24&#39; expires" in html  # the finding
    assert "issued by assess root · 1 endpoint<" in html  # the CA both chains share
    assert html.count(rsa_leaf.sha256) >= 1  # its details section
    assert "alternative chain 1: <a href=" in html  # listed under the endpoint's leaf
    assert '<span class="sub">alternative chain 1</span>' in html  # where it is served

    rows = list(csv.DictReader(io.StringIO(get_renderer("csv").render(report).decode())))
    assert [(r["kind"], r["sha256"], r["days_left"]) for r in rows] == [
        ("expiring", rsa_leaf.sha256, "5")
    ]
    inventory = get_renderer("csv", csv_kind="inventory").render(report).decode()
    rows = list(csv.DictReader(io.StringIO(inventory)))
    assert [(r["sha256"], r["key"], r["chain"], r["findings"]) for r in rows] == [
        (endpoint.chain[0].sha256, "EC 256", "0", "1"),
        (rsa_leaf.sha256, "RSA 2048", "1", ""),
    ]


def test_lifecycle_records_findings_of_alternative_chains(pki: Pki, tmp_path: Path) -> None:
    rsa = pki.leaf(25, days_left=5, key=certgen.make_key("rsa", 2048))
    alt = (rsa.der, pki.inter.der)
    outcome, parsed = shake(pki, 25, pki.leaf(25), at=NOW - DAY)
    assert isinstance(outcome, Handshake)
    item = (replace(outcome, alt_chains=(alt,)), parsed)
    with Inventory(str(tmp_path / "inv.db")) as inv:
        scan = inv.start_scan(spec={"alt": 1}, total=1)
        inv.record_batch(
            scan, [item], watermark=1, alt_chains=[(tuple(parse_certificate(d) for d in alt),)]
        )
        inv.finish_scan(scan, "finished")
        judged = assess.record_scan(inv, scan, criteria=pki.criteria, now=NOW)
        assert judged.changes.new == 1
        rows = inv.findings(open_only=False)
    assert [(r.kind, r.sha256) for r in rows] == [("expiring", parse_certificate(rsa.der).sha256)]


def test_iter_views_matches_read_views_over_several_sweeps(pki: Pki, tmp_path: Path) -> None:
    key = certgen.make_key("ec")
    with Inventory(str(tmp_path / "inv.db")) as inv:
        sweep(
            inv,
            [shake(pki, n, pki.leaf(n, days_left=n - 2), at=NOW - 3 * DAY) for n in range(7)],
        )
        sweep(
            inv,
            [
                shake(pki, 1, pki.leaf(1, days_left=40), at=NOW - 2 * DAY),  # changed leaf
                shake(pki, 3, pki.leaf(3, key=key), at=NOW - 2 * DAY),
                failure(4, at=NOW - 2 * DAY, connected=True),
            ],
        )
        sweep(
            inv,
            [
                shake(pki, 5, pki.leaf(5, key=key), at=NOW - DAY),
                failure(6, at=NOW - DAY, connected=False),
            ],
        )
        every = assess.read_views(inv, criteria=pki.criteria, now=NOW)
        for size in (1, 2, 1000):
            batches = list(assess.iter_views(inv, criteria=pki.criteria, now=NOW, batch=size))
            assert all(0 < len(b) <= size for b in batches)
            assert [v for b in batches for v in b] == list(every)
    assert any("key_reuse" in kinds(v) for v in every)
    assert any("certificate_changed" in kinds(v) for v in every)
