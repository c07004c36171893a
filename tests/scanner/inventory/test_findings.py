"""The inventory's schema 2 on real databases: the protocol probe and connection columns, the
findings lifecycle, previous leaves for ``certificate_changed``, and the migration of a
database written by schema 1 (its DDL is kept below as data). Fixtures: this directory's conftest.
"""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from scanner.errors import StoreError
from scanner.inventory import findings as store_findings
from scanner.inventory import tables
from scanner.inventory.store import EndpointRecord, FindingRecord, Inventory, db_url
from scanner.lab import certgen
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

T0 = datetime(2031, 3, 1, 9, 0, 0, 250000, tzinfo=UTC)
HOUR = timedelta(hours=1)

Item = tuple[Outcome, tuple[CertInfo, ...]]
Key = tuple[str, int, str | None]


# --- helpers ------------------------------------------------------------------------------


def key(n: int, sni: str | None = None) -> Key:
    return (f"127.0.8.{n}", 443, sni)


def shake(n: int, *certs: certgen.Issued, at: datetime = T0, **kw: Any) -> Item:
    address, port, sni = key(n, kw.pop("sni", None))
    chain = tuple(c.der for c in certs)
    outcome = Handshake(
        target=Target(address=address, port=port, sni=sni),
        started_at=at,
        chain=chain,
        tls_version="TLSv1.2",
        cipher="ECDHE-RSA-AES128-GCM-SHA256",
        **kw,
    )
    return outcome, tuple(parse_certificate(der) for der in chain)


def fail(n: int, *, connected: bool, at: datetime = T0) -> Item:
    address, port, _ = key(n)
    kind = FailureKind.TLS_ALERT if connected else FailureKind.REFUSED
    target = Target(address=address, port=port)
    return ScanFailure(target=target, started_at=at, kind=kind, detail="d", connected=connected), ()


def observe(inv: Inventory, *items: Item) -> int:
    scan = inv.start_scan(spec={"items": len(items)}, total=len(items))
    inv.record_batch(scan, list(items), watermark=len(items))
    inv.finish_scan(scan, "finished")
    return scan


def finding(
    n: int, kind: str, severity: Severity, sha256: str | None = None, message: str = ""
) -> Finding:
    address, port, sni = key(n)
    text = message or f"{kind} on {address}"
    return Finding(
        kind=kind,
        severity=severity,
        message=text,
        address=address,
        port=port,
        sni=sni,
        sha256=sha256,
    )


def sha(issued: certgen.Issued) -> str:
    return parse_certificate(issued.der).sha256


def by_key(records: list[EndpointRecord]) -> dict[Key, EndpointRecord]:
    return {(r.address, r.port, r.sni): r for r in records}


def lifecycle(records: list[FindingRecord]) -> list[tuple[str, str, str, bool]]:
    return [(r.address, r.kind, r.severity.label, r.resolved_at is None) for r in records]


# --- observation columns ------------------------------------------------------------------


def test_probe_results_and_connection_round_trip(
    inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    observe(
        inventory,
        shake(1, pki["a"]),
        shake(2, pki["a"], legacy_versions=()),
        shake(3, pki["b"], legacy_versions=("TLSv1", "TLSv1.1")),
        fail(4, connected=True),
        fail(5, connected=False),
    )
    got = by_key(inventory.latest_endpoints(include_failures=True))
    assert [got[key(n)].legacy_versions for n in (1, 2, 3)] == [None, (), ("TLSv1", "TLSv1.1")]
    assert [got[key(n)].connected for n in (1, 2, 3, 4)] == [True, True, True, True]
    assert got[key(4)].legacy_versions is None
    # Never answered and not known before: counted, not stored.
    assert key(5) not in got
    # Once known, an endpoint that stops answering is observed as such.
    observe(inventory, fail(1, connected=False))
    got = by_key(inventory.latest_endpoints(include_failures=True))
    assert got[key(1)].connected is False
    assert got[key(1)].status == "refused"


@pytest.mark.parametrize("versions", [("TLSv1,TLSv1.1",), ("",)])
def test_unstorable_version_names_are_refused(
    inventory: Inventory, pki: dict[str, certgen.Issued], versions: tuple[str, ...]
) -> None:
    scan = inventory.start_scan(spec={}, total=1)
    with pytest.raises(ValueError, match="protocol version"):
        inventory.record_batch(scan, [shake(1, pki["a"], legacy_versions=versions)], watermark=1)
    assert inventory.stats()["observations"] == 0


# --- findings lifecycle -------------------------------------------------------------------


def test_findings_open_update_resolve_and_reopen(
    inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    a, b = sha(pki["a"]), sha(pki["b"])
    first = observe(inventory, shake(1, pki["a"]), shake(2, pki["b"]), shake(3, pki["a"]))
    changes = inventory.record_findings(
        first,
        [
            finding(1, "expiring", Severity.HIGH, a, "expires in 20 days"),
            finding(1, "legacy_protocol", Severity.MEDIUM),
            finding(2, "weak_key", Severity.HIGH, b),
            finding(3, "expiring", Severity.LOW, a),
        ],
        evaluated=[key(1), key(2), key(3)],
        now=T0,
    )
    assert (changes.new, changes.still_open, changes.resolved) == (4, 0, 0)

    # Endpoint 3 is not evaluated by the second scan: its finding must stay as it was.
    second = observe(inventory, shake(1, pki["a"], at=T0 + HOUR), shake(2, pki["b"], at=T0 + HOUR))
    later = T0 + 2 * HOUR
    changes = inventory.record_findings(
        second,
        [
            finding(1, "expiring", Severity.CRITICAL, a, "expires in 6 days"),
            finding(2, "weak_key", Severity.HIGH, b),
            finding(2, "self_signed", Severity.MEDIUM, b),
        ],
        evaluated=[key(1), key(2)],
        now=later,
    )
    assert (changes.new, changes.still_open, changes.resolved) == (1, 2, 1)

    open_now = inventory.findings()
    assert lifecycle(open_now) == [  # most severe first, then address
        ("127.0.8.1", "expiring", "critical", True),
        ("127.0.8.2", "weak_key", "high", True),
        ("127.0.8.2", "self_signed", "medium", True),
        ("127.0.8.3", "expiring", "low", True),
    ]
    expiring = open_now[0]
    assert (expiring.message, expiring.sha256, expiring.sni) == ("expires in 6 days", a, None)
    assert (expiring.first_seen, expiring.last_seen, expiring.resolved_at) == (T0, later, None)
    assert (expiring.first_scan_id, expiring.last_scan_id) == (first, second)
    untouched = open_now[3]
    assert (untouched.last_seen, untouched.last_scan_id) == (T0, first)
    assert expiring.finding == finding(1, "expiring", Severity.CRITICAL, a, "expires in 6 days")

    everything = inventory.findings(open_only=False, endpoint=key(1))
    assert lifecycle(everything) == [
        ("127.0.8.1", "expiring", "critical", True),
        ("127.0.8.1", "legacy_protocol", "medium", False),
    ]
    resolved = everything[1]
    assert (resolved.resolved_at, resolved.last_seen, resolved.last_scan_id) == (later, T0, first)
    assert resolved.sha256 is None

    # The legacy protocol comes back: a new episode, the old one stays resolved.
    third = observe(inventory, shake(1, pki["a"], at=T0 + 3 * HOUR))
    back = T0 + 4 * HOUR
    inventory.record_findings(
        third,
        [
            finding(1, "expiring", Severity.CRITICAL, a, "expires in 5 days"),
            finding(1, "legacy_protocol", Severity.MEDIUM),
        ],
        evaluated=[key(1)],
        now=back,
    )
    episodes = [r for r in inventory.findings(open_only=False) if r.kind == "legacy_protocol"]
    assert [(r.first_seen, r.resolved_at, r.first_scan_id) for r in episodes] == [
        (T0, later, first),
        (back, None, third),
    ]
    assert inventory.stats()["findings"] == 6
    assert inventory.findings(endpoint=key(9)) == []


def test_an_evaluation_without_findings_resolves_them_all(
    inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    # Two endpoints on one address: with and without SNI. Only the SNI one is evaluated again.
    scan = observe(inventory, shake(1, pki["a"], sni="a.example"), shake(1, pki["a"]))
    bare = finding(1, "no_san", Severity.LOW, sha(pki["a"]))
    with_sni = Finding(**{**_fields(bare), "sni": "a.example"})
    both = [key(1, "a.example"), key(1)]
    inventory.record_findings(scan, [with_sni, bare], evaluated=both, now=T0)
    assert [r.finding for r in inventory.findings(endpoint=key(1, "a.example"))] == [with_sni]

    changes = inventory.record_findings(scan, [], evaluated=[key(1, "a.example")], now=T0 + HOUR)
    assert (changes.new, changes.still_open, changes.resolved) == (0, 0, 1)
    [left] = inventory.findings()
    assert (left.finding, left.last_seen) == (bare, T0)


def test_recording_the_same_evaluation_twice_changes_only_last_seen(
    inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    scan = observe(inventory, shake(1, pki["a"]))
    found = [finding(1, "expired", Severity.CRITICAL, sha(pki["a"]))]
    inventory.record_findings(scan, found, evaluated=[key(1)], now=T0)
    again = inventory.record_findings(scan, found, evaluated=[key(1)], now=T0 + HOUR)
    assert (again.new, again.still_open, again.resolved) == (0, 1, 0)
    [stored] = inventory.findings(open_only=False)
    assert (stored.first_seen, stored.last_seen) == (T0, T0 + HOUR)


def test_one_identity_twice_keeps_the_most_severe(
    inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    scan = observe(inventory, shake(1, pki["a"], pki["inter"]))
    inter = sha(pki["inter"])
    twice = [
        finding(1, "weak_signature", Severity.MEDIUM, inter, "medium"),
        finding(1, "weak_signature", Severity.HIGH, inter, "high"),
        finding(1, "weak_signature", Severity.LOW, inter, "low"),
        finding(1, "weak_signature", Severity.LOW, sha(pki["a"]), "on the leaf"),
    ]
    changes = inventory.record_findings(scan, twice, evaluated=[key(1)], now=T0)
    assert changes.new == 2
    assert [r.message for r in inventory.findings()] == ["high", "on the leaf"]


def test_hostile_finding_text_is_stored(
    inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    scan = observe(inventory, shake(1, pki["a"]))
    message = "CN <script>alert(1)</script> \x00 \ud800 \u202e 🔒"
    inventory.record_findings(
        scan, [finding(1, "no_san", Severity.LOW, None, message)], evaluated=[key(1)], now=T0
    )
    [stored] = inventory.findings()
    assert stored.message == message.replace("\x00", "\ufffd").replace("\ud800", "\ufffd")


def test_bad_evaluations_are_refused_and_store_nothing(
    inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    scan = observe(inventory, shake(1, pki["a"]))
    good = finding(1, "no_san", Severity.LOW)
    cases: list[tuple[str, int, list[Finding], list[Key], datetime]] = [
        ("no scan", 999, [good], [key(1)], T0),
        ("naive datetime", scan, [good], [key(1)], T0.replace(tzinfo=None)),
        ("an endpoint not evaluated", scan, [good], [key(2)], T0),
        ("endpoint is not stored", scan, [finding(7, "x", Severity.LOW)], [key(1), key(7)], T0),
    ]
    for reason, scan_id, found, evaluated, now in cases:
        with pytest.raises(ValueError, match=reason):
            inventory.record_findings(scan_id, found, evaluated=evaluated, now=now)
    assert inventory.stats()["findings"] == 0


def test_record_findings_is_one_transaction(
    inventory: Inventory, pki: dict[str, certgen.Issued], monkeypatch: pytest.MonkeyPatch
) -> None:
    scan = observe(inventory, shake(1, pki["a"]), shake(2, pki["b"]))
    before = [finding(1, "no_san", Severity.LOW), finding(2, "no_san", Severity.LOW)]
    inventory.record_findings(scan, before, evaluated=[key(1), key(2)], now=T0)
    real_row = store_findings._row

    def broken(*args: Any) -> dict[str, object]:
        return real_row(*args) | {"endpoint_id": 10**9}  # violates the foreign key at the end

    monkeypatch.setattr(store_findings, "_row", broken)
    after = [finding(1, "no_san", Severity.HIGH), finding(1, "expired", Severity.CRITICAL)]
    with pytest.raises(StoreError, match="cannot store findings"):
        inventory.record_findings(scan, after, evaluated=[key(1), key(2)], now=T0 + HOUR)
    # Neither the update of endpoint 1 nor the resolution of endpoint 2 survived.
    assert lifecycle(inventory.findings(open_only=False)) == [
        ("127.0.8.1", "no_san", "low", True),
        ("127.0.8.2", "no_san", "low", True),
    ]


def test_the_database_allows_one_open_row_per_identity(
    inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    scan = observe(inventory, shake(1, pki["a"]))
    inventory.record_findings(
        scan,
        [finding(1, "legacy_protocol", Severity.MEDIUM), finding(1, "x", Severity.LOW, "ab")],
        evaluated=[key(1)],
        now=T0,
    )
    with inventory.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(tables.FINDING))]
    for row in rows:  # NULL sha256 included: the index is on coalesce(sha256, '')
        duplicate = {k: v for k, v in row.items() if k != "id"}
        with pytest.raises(sa_exc.IntegrityError), inventory.engine.begin() as conn:
            conn.execute(sa.insert(tables.FINDING), duplicate)
        with inventory.engine.begin() as conn:  # a resolved episode beside the open one is fine
            conn.execute(sa.insert(tables.FINDING), duplicate | {"resolved_at": T0})
    assert inventory.stats()["findings"] == 4


def test_record_findings_is_bulk(tmp_path: Path, pki: dict[str, certgen.Issued]) -> None:
    with Inventory(db_url(str(tmp_path / "bulk.db"))) as inv:
        n = 1200
        items = [shake(i % 250, pki["a"], sni=f"h{i}.example") for i in range(n)]
        scan = observe(inv, *items)
        keys = [(f"127.0.8.{i % 250}", 443, f"h{i}.example") for i in range(n)]
        found = [
            Finding(kind=kind, severity=Severity.LOW, message=kind, address=a, port=p, sni=s)
            for a, p, s in keys
            for kind in ("no_san", "weak_cipher")
        ]
        statements: list[str] = []
        sa.event.listen(
            inv.engine, "before_cursor_execute", lambda *args: statements.append(args[2])
        )
        inv.record_findings(scan, found, evaluated=keys, now=T0)
        first = len(statements)
        changes = inv.record_findings(scan, found[::2], evaluated=keys, now=T0 + HOUR)
    assert (changes.new, changes.still_open, changes.resolved) == (0, n, n)
    assert first < 20  # a few chunked reads and bulk writes, not one statement per finding
    assert len(statements) - first < 20


# --- previous leaves and the latest scan --------------------------------------------------


def test_previous_leaves(inventory: Inventory, pki: dict[str, certgen.Issued]) -> None:
    c = certgen.make_leaf(pki["inter"], cn="c.example")
    a, b, cc = sha(pki["a"]), sha(pki["b"]), sha(c)
    assert inventory.latest_scan() is None
    s1 = observe(inventory, shake(1, pki["a"]), shake(2, pki["a"]), shake(3, c))
    s2 = observe(
        inventory,
        fail(1, connected=True, at=T0 + HOUR),
        shake(3, pki["b"], at=T0 + HOUR),
        shake(4, pki["a"], at=T0 + HOUR),
    )
    s3 = observe(
        inventory, shake(1, pki["b"], at=T0 + 2 * HOUR), fail(3, connected=False, at=T0 + 2 * HOUR)
    )
    latest = inventory.latest_scan()
    assert latest is not None
    assert (latest.id, latest.status) == (s3, "finished")

    # 1: b now, a before the failure. 2 and 4: observed once. 3: the failure is latest.
    assert inventory.previous_leaves() == {key(1): a, key(3): b}
    assert inventory.previous_leaves(s3) == {key(1): a, key(3): b}
    assert inventory.previous_leaves(s2) == {key(1): a, key(3): cc}  # 4 is new in s2
    assert inventory.previous_leaves(s1) == {}
    assert inventory.previous_leaves(12345) == {}


def test_previous_leaf_of_observations_at_the_same_instant(
    inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    first = observe(inventory, shake(1, pki["a"]))
    second = observe(inventory, shake(1, pki["b"]))  # same observed_at: the later id is newer
    assert inventory.previous_leaves() == {key(1): sha(pki["a"])}
    assert inventory.previous_leaves(second) == {key(1): sha(pki["a"])}
    assert inventory.previous_leaves(first) == {}
    [record] = inventory.latest_endpoints()
    assert record.scan_id == second


# --- schema evolution ---------------------------------------------------------------------

# The DDL certscan's schema 1 created, as SQLAlchemy rendered it for each backend.
SQLITE_V1 = """
CREATE TABLE certscan_meta (
    "key" TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY ("key")
);
CREATE TABLE scan_run (
    id INTEGER NOT NULL, started_at DATETIME NOT NULL, finished_at DATETIME,
    status TEXT NOT NULL, spec TEXT NOT NULL, spec_hash TEXT NOT NULL, total INTEGER NOT NULL,
    watermark INTEGER NOT NULL, done INTEGER NOT NULL, ok INTEGER NOT NULL,
    failed INTEGER NOT NULL, version TEXT NOT NULL, PRIMARY KEY (id)
);
CREATE INDEX ix_scan_run_spec_hash ON scan_run (spec_hash);
CREATE TABLE endpoint (
    id INTEGER NOT NULL, address TEXT NOT NULL, port INTEGER NOT NULL, sni TEXT NOT NULL,
    first_seen DATETIME NOT NULL, last_seen DATETIME NOT NULL, PRIMARY KEY (id),
    CONSTRAINT uq_endpoint UNIQUE (address, port, sni)
);
CREATE TABLE certificate (
    sha256 TEXT NOT NULL, der BLOB NOT NULL, error TEXT, subject TEXT, subject_cn TEXT,
    subject_o TEXT, issuer TEXT, issuer_cn TEXT, issuer_o TEXT, serial TEXT,
    not_before DATETIME, not_after DATETIME, san_dns TEXT, key_type TEXT, key_bits INTEGER,
    key_curve TEXT, signature_algorithm TEXT, signature_hash TEXT, is_ca BOOLEAN,
    self_issued BOOLEAN NOT NULL, spki_sha256 TEXT, info TEXT NOT NULL,
    first_seen DATETIME NOT NULL, PRIMARY KEY (sha256)
);
CREATE INDEX ix_certificate_not_after ON certificate (not_after);
CREATE INDEX ix_certificate_spki_sha256 ON certificate (spki_sha256);
CREATE TABLE observation (
    id INTEGER NOT NULL, scan_id INTEGER NOT NULL, endpoint_id INTEGER NOT NULL,
    target_index INTEGER, observed_at DATETIME NOT NULL, status TEXT NOT NULL, error TEXT,
    tls_version TEXT, cipher TEXT, alpn TEXT, ocsp_staple BLOB, connect_seconds FLOAT,
    handshake_seconds FLOAT, elapsed_seconds FLOAT, PRIMARY KEY (id),
    CONSTRAINT uq_observation_scan_endpoint UNIQUE (scan_id, endpoint_id),
    FOREIGN KEY(scan_id) REFERENCES scan_run (id),
    FOREIGN KEY(endpoint_id) REFERENCES endpoint (id)
);
CREATE INDEX ix_observation_endpoint_time ON observation (endpoint_id, observed_at, id);
CREATE INDEX ix_observation_scan_target ON observation (scan_id, target_index);
CREATE TABLE observation_certificate (
    observation_id INTEGER NOT NULL, position INTEGER NOT NULL, sha256 TEXT NOT NULL,
    PRIMARY KEY (observation_id, position),
    FOREIGN KEY(observation_id) REFERENCES observation (id) ON DELETE CASCADE,
    FOREIGN KEY(sha256) REFERENCES certificate (sha256)
);
CREATE INDEX ix_observation_certificate_sha256 ON observation_certificate (sha256);
"""

POSTGRES_V1 = """
CREATE TABLE certscan_meta (key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (key));
CREATE TABLE scan_run (
    id BIGSERIAL NOT NULL, started_at TIMESTAMP WITH TIME ZONE NOT NULL,
    finished_at TIMESTAMP WITH TIME ZONE, status TEXT NOT NULL, spec TEXT NOT NULL,
    spec_hash TEXT NOT NULL, total BIGINT NOT NULL, watermark BIGINT NOT NULL,
    done BIGINT NOT NULL, ok BIGINT NOT NULL, failed BIGINT NOT NULL, version TEXT NOT NULL,
    PRIMARY KEY (id)
);
CREATE INDEX ix_scan_run_spec_hash ON scan_run (spec_hash);
CREATE TABLE endpoint (
    id BIGSERIAL NOT NULL, address TEXT NOT NULL, port INTEGER NOT NULL, sni TEXT NOT NULL,
    first_seen TIMESTAMP WITH TIME ZONE NOT NULL, last_seen TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (id), CONSTRAINT uq_endpoint UNIQUE (address, port, sni)
);
CREATE TABLE certificate (
    sha256 TEXT NOT NULL, der BYTEA NOT NULL, error TEXT, subject TEXT, subject_cn TEXT,
    subject_o TEXT, issuer TEXT, issuer_cn TEXT, issuer_o TEXT, serial TEXT,
    not_before TIMESTAMP WITH TIME ZONE, not_after TIMESTAMP WITH TIME ZONE, san_dns TEXT,
    key_type TEXT, key_bits INTEGER, key_curve TEXT, signature_algorithm TEXT,
    signature_hash TEXT, is_ca BOOLEAN, self_issued BOOLEAN NOT NULL, spki_sha256 TEXT,
    info TEXT NOT NULL, first_seen TIMESTAMP WITH TIME ZONE NOT NULL, PRIMARY KEY (sha256)
);
CREATE INDEX ix_certificate_not_after ON certificate (not_after);
CREATE INDEX ix_certificate_spki_sha256 ON certificate (spki_sha256);
CREATE TABLE observation (
    id BIGSERIAL NOT NULL, scan_id BIGINT NOT NULL, endpoint_id BIGINT NOT NULL,
    target_index BIGINT, observed_at TIMESTAMP WITH TIME ZONE NOT NULL, status TEXT NOT NULL,
    error TEXT, tls_version TEXT, cipher TEXT, alpn TEXT, ocsp_staple BYTEA,
    connect_seconds FLOAT, handshake_seconds FLOAT, elapsed_seconds FLOAT, PRIMARY KEY (id),
    CONSTRAINT uq_observation_scan_endpoint UNIQUE (scan_id, endpoint_id),
    FOREIGN KEY(scan_id) REFERENCES scan_run (id),
    FOREIGN KEY(endpoint_id) REFERENCES endpoint (id)
);
CREATE INDEX ix_observation_endpoint_time ON observation (endpoint_id, observed_at, id);
CREATE INDEX ix_observation_scan_target ON observation (scan_id, target_index);
CREATE TABLE observation_certificate (
    observation_id BIGINT NOT NULL, position INTEGER NOT NULL, sha256 TEXT NOT NULL,
    PRIMARY KEY (observation_id, position),
    FOREIGN KEY(observation_id) REFERENCES observation (id) ON DELETE CASCADE,
    FOREIGN KEY(sha256) REFERENCES certificate (sha256)
);
CREATE INDEX ix_observation_certificate_sha256 ON observation_certificate (sha256);
"""

_V1_OBSERVATION = sa.text(
    "INSERT INTO observation (scan_id, endpoint_id, observed_at, status, error, tls_version,"
    " cipher) VALUES (:scan, :endpoint, :at, :status, :error, :version, :cipher) RETURNING id"
).bindparams(sa.bindparam("at", type_=tables.UTCDateTime()))


def make_v1_database(url: str, leaf: certgen.Issued) -> str:
    """A database as schema 1 left it: one scan, a handshake with its leaf, and a failure.
    Ids come from the database, as they did (PostgreSQL sequences must have moved on)."""
    engine = sa.create_engine(url)
    ddl = SQLITE_V1 if engine.dialect.name == "sqlite" else POSTGRES_V1
    info = parse_certificate(leaf.der)
    s, e = tables.SCAN_RUN, tables.ENDPOINT
    with engine.begin() as conn:
        for statement in filter(str.strip, ddl.split(";")):
            conn.exec_driver_sql(statement)
        conn.execute(sa.insert(tables.META).values(key="schema_version", value="1"))
        run = {"started_at": T0, "status": "finished", "spec": "{}", "spec_hash": "x"}
        counts = {"total": 2, "watermark": 2, "done": 2, "ok": 1, "failed": 1}
        scan = conn.execute(
            sa.insert(s).values(**run, **counts, version="0.1.0").returning(s.c.id)
        ).scalar_one()
        conn.execute(sa.insert(tables.CERTIFICATE).values(tables.certificate_row(info, T0)))
        rows = [("ok", None, "TLSv1.3", "TLS_AES_128_GCM_SHA256"), ("timeout", "t", None, None)]
        for n, (status, error, version, cipher) in enumerate(rows, start=1):
            address, port, _ = key(n)
            endpoint = conn.execute(
                sa.insert(e)
                .values(address=address, port=port, sni="", first_seen=T0, last_seen=T0)
                .returning(e.c.id)
            ).scalar_one()
            observation = conn.execute(
                _V1_OBSERVATION,
                {"scan": scan, "endpoint": endpoint, "at": T0, "status": status,
                 "error": error, "version": version, "cipher": cipher},
            ).scalar_one()  # fmt: skip
            if status == "ok":
                link = {"observation_id": observation, "position": 0, "sha256": info.sha256}
                conn.execute(sa.insert(tables.OBSERVATION_CERTIFICATE).values(link))
    engine.dispose()
    return info.sha256


def stored_version(inv: Inventory) -> str:
    with inv.engine.connect() as conn:
        return str(conn.execute(sa.select(tables.META.c.value)).scalar_one())


def test_a_schema_1_database_is_migrated(url: str, pki: dict[str, certgen.Issued]) -> None:
    leaf = make_v1_database(url, pki["a"])
    with Inventory(url) as inv:
        assert stored_version(inv) == str(tables.SCHEMA_VERSION) == "4"
        with inv.engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("observation")}
            assert {"legacy_versions", "connected", "protocol"} <= columns
            assert sa.inspect(conn).has_table("observation_alt_certificate")
        old = by_key(inv.latest_endpoints(include_failures=True))
        assert old[key(1)].chain[0].sha256 == leaf
        assert (old[key(1)].legacy_versions, old[key(1)].connected) == (None, True)
        assert (old[key(2)].status, old[key(2)].connected) == ("timeout", None)  # unknown

        # The new table works, with its one-open-row index, and new scans continue the ids.
        scan = observe(inv, shake(1, pki["b"], at=T0 + HOUR, legacy_versions=("TLSv1",)))
        assert scan == 2
        assert inv.previous_leaves() == {key(1): leaf}
        found = [finding(1, "legacy_protocol", Severity.MEDIUM)]
        assert inv.record_findings(scan, found, evaluated=[key(1)], now=T0).new == 1
        with inv.engine.connect() as conn:
            row = conn.execute(sa.select(tables.FINDING)).one()._mapping
        with pytest.raises(sa_exc.IntegrityError), inv.engine.begin() as conn:
            conn.execute(sa.insert(tables.FINDING), {k: v for k, v in row.items() if k != "id"})
    with Inventory(url) as inv:  # opening again changes nothing
        assert stored_version(inv) == str(tables.SCHEMA_VERSION)
        assert [r.kind for r in inv.findings()] == ["legacy_protocol"]
        assert by_key(inv.latest_endpoints())[key(1)].legacy_versions == ("TLSv1",)


def test_a_newer_schema_is_refused_before_any_change(tmp_path: Path) -> None:
    url = db_url(str(tmp_path / "future.db"))
    with Inventory(url) as inv, inv.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE finding"))
        conn.execute(sa.update(tables.META).values(value=str(tables.SCHEMA_VERSION + 1)))
    with pytest.raises(StoreError, match=f"schema version {tables.SCHEMA_VERSION + 1}, newer"):
        Inventory(url)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert not sa.inspect(conn).has_table("finding")
    engine.dispose()


def test_concurrent_openers_create_the_schema_once(url: str) -> None:
    def open_and_count(_: int) -> int:
        with Inventory(url) as inv, inv.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(tables.META)).scalar_one()

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(open_and_count, range(16))) == [1] * 16


def test_opening_waits_out_a_writer_on_a_file_not_yet_in_wal_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Switching to WAL while another connection holds the write lock fails at once, whatever the
    # busy timeout: the opener must retry (here the other writer commits during the first pause).
    path = tmp_path / "busy.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("CREATE TABLE other (x)")
    writer.execute("BEGIN IMMEDIATE")
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        if writer.in_transaction:
            writer.execute("COMMIT")

    monkeypatch.setattr("scanner.inventory.schema.time.sleep", pause)
    try:
        with Inventory(db_url(str(path))) as inv, inv.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        writer.close()
    assert len(pauses) == 1


def _fields(found: Finding) -> dict[str, Any]:
    return {name: getattr(found, name) for name in Finding.__dataclass_fields__}
