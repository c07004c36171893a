"""The estate-wide context of a sweep's judgement (``reports.assess._estate``) read from bare
leaf rows (``scanner.inventory.estate``) against the same rules fed every endpoint's whole
latest chain, as ``certscan report`` feeds them: the fleet and on-disk findings must be
identical, on a real SQLite inventory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reports import assess
from reports.deployed import undeployed
from reports.fleet import fleet_inconsistencies
from reports.policy import Policy
from reports.trust import TrustStore
from scanner.inventory.store import Inventory, db_url
from scanner.lab import certgen
from scanner.models import CertInfo, FailureKind, Handshake, Outcome, ScanFailure, Target
from scanner.parse import parse_certificate

NOW = datetime.now(UTC).replace(microsecond=0)
DAY = timedelta(days=1)
Item = tuple[Outcome, tuple[CertInfo, ...]]


def seen(target: Target, *certs: certgen.Issued, at: datetime = NOW) -> Item:
    chain = tuple(c.der for c in certs)
    outcome = Handshake(
        target=target,
        started_at=at,
        chain=chain,
        tls_version="TLSv1.3",
        cipher="TLS_AES_128_GCM_SHA256",
    )
    return outcome, tuple(parse_certificate(der) for der in chain)


def leaf(issuer: certgen.Issued, names: list[str], days_left: float) -> certgen.Issued:
    return certgen.make_leaf(
        issuer,
        cn=names[0] if names else None,
        dns_names=names,
        san=bool(names),
        not_before=NOW - 30 * DAY,
        not_after=NOW + days_left * DAY,
    )


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three nodes of www.example.test:443 (one stale), two of api (same leaf), a node of
    www on another port, address-only endpoints, certificate files (one newer than what two
    endpoints serve, one served everywhere, one CA), a later failure of one node and an
    earlier observation superseded by a newer leaf."""
    root = certgen.make_ca("Estate Root")
    inter = certgen.make_ca("Estate CA", issuer=root)
    fresh, stale = leaf(inter, ["www.example.test"], 80), leaf(inter, ["WWW.example.test."], 3)
    api = leaf(inter, ["api.example.test"], 40)
    newer_api = leaf(inter, ["api.example.test", "alt.example.test"], 85)
    bare = [leaf(inter, [], 50), leaf(inter, ["other.example.test"], 20)]
    www = "www.example.test"
    items: list[Item] = [
        seen(Target(address="127.0.0.1", port=443, sni=www), fresh, inter),
        seen(Target(address="127.0.0.2", port=443, sni="WWW.example.test"), stale, inter),
        seen(Target(address="127.0.0.3", port=443, sni=www), fresh, inter),
        seen(Target(address="::1", port=443, sni=www), stale, inter),
        seen(Target(address="127.0.0.4", port=8443, sni=www), stale, inter),
        seen(Target(address="127.0.0.5", port=443, sni="api.example.test"), api, inter),
        seen(Target(address="127.0.0.6", port=443, sni="api.example.test"), api, inter),
        seen(Target(address="127.0.1.1", port=443), bare[0], inter),
        seen(Target(address="127.0.1.2", port=443), bare[1], inter),
        seen(Target(address="127.0.1.3", port=443), api, inter),
        seen(Target(address="file:/etc/ssl/api.pem", port=0), newer_api, inter),
        seen(Target(address="file:/etc/ssl/www.pem", port=0), fresh, inter),
        seen(Target(address="file:/etc/ssl/ca.pem", port=0), inter),
    ]
    later: list[Item] = [
        (
            ScanFailure(
                target=Target(address="127.0.0.3", port=443, sni=www),
                started_at=NOW + DAY,
                kind=FailureKind.RESET,
                detail="reset",
                connected=True,
            ),
            (),
        ),
        seen(Target(address="127.0.1.2", port=443), bare[0], inter, at=NOW + DAY),
    ]
    path = tmp_path_factory.mktemp("estate") / "estate.db"
    with Inventory(db_url(str(path))) as inv:
        for batch in (items, later):
            targets = [o.target.label() for o, _ in batch]
            scan = inv.start_scan(spec={"targets": targets}, total=len(batch))
            inv.record_batch(scan, batch, watermark=0)
            inv.finish_scan(scan, "finished")
    return path


def test_bare_rows_give_the_findings_of_whole_chains(inventory: Path) -> None:
    root = certgen.make_ca("Unused Root")
    criteria = assess.Criteria(
        policy=Policy(), trust=TrustStore.from_pem(root.cert_pem, mozilla=False)
    )
    now = NOW + 2 * DAY
    with Inventory(db_url(str(inventory))) as inv:
        estate = assess._estate(inv, criteria=criteria, now=now)
        whole = [assess.to_input(r) for r in inv.latest_endpoints() if r.chain]
    assert estate.fleet == fleet_inconsistencies(whole, now=now, policy=criteria.policy)
    assert estate.on_disk == undeployed(whole)
    # The inventory does exercise both rules.
    assert {k[0] for k in estate.fleet} == {"127.0.0.2", "::1"}
    assert {k[0] for k in estate.on_disk} == {
        "file:/etc/ssl/api.pem", "127.0.0.5", "127.0.0.6", "127.0.1.3",
        "file:/etc/ssl/www.pem", "127.0.0.2", "::1", "127.0.0.4",
    }  # fmt: skip


def test_without_files_only_endpoints_sent_an_sni_are_kept(inventory: Path) -> None:
    with Inventory(db_url(str(inventory))) as inv:
        rows = inv.latest_leaves(lambda row: row, files=False)
        files = inv.latest_leaves(lambda row: row, files=True, with_info=True)
    assert {r.address for r in files} == {
        "file:/etc/ssl/api.pem", "file:/etc/ssl/www.pem", "file:/etc/ssl/ca.pem"
    }  # fmt: skip
    # 127.0.0.3's latest observation is a failure: it has no latest leaf.
    assert "127.0.0.3" not in {r.address for r in rows}
    assert all(r.info is None for r in rows)
    by_address = {r.address: r for r in rows}
    assert by_address["127.0.1.1"].has_names is False
    assert by_address["127.0.1.2"].has_names is False  # its newer observation's leaf
    assert [r.has_names for r in files if r.address.endswith("ca.pem")] == [False]


def test_key_peers_match_the_naive_sets() -> None:
    """``KeyPeers`` (sets built on lookup) against one set per (endpoint, leaf) built the plain
    way, with endpoints serving a key with one and with two certificates (alternative chains)."""
    from reports.findings import KeyPeers, _key_groups

    a, b, c, d = (("127.0.0.1", p, None) for p in (1, 2, 3, 4))
    rows = [
        (a, "s1", "k1"), (b, "s2", "k1"), (c, "s2", "k1"), (c, "s3", "k1"),
        (d, "s4", "k2"), (d, "s5", "k2"),  # one endpoint, two certificates: no peer
        (a, "s6", "k3"), (b, "s6", "k3"),  # one certificate: no group
    ]  # fmt: skip
    groups = _key_groups(rows)
    naive = {}
    for members in groups.values():
        for key, sha in members:
            peers = frozenset(k for k, s in members if s != sha and k != key)
            if peers:
                naive[(key, sha)] = peers
    lazy = KeyPeers(groups)
    assert dict(lazy.items()) == naive
    assert len(lazy) == len(naive) == 4
    assert (d, "s4") not in lazy
    assert lazy.get((d, "s5")) is None
    assert lazy[(c, "s3")] == frozenset({a, b})
