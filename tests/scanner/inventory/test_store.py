"""The inventory on real databases: SQLite files in tmp_path and the machine's PostgreSQL
(the ``url``, ``inventory`` and ``pki`` fixtures are in this directory's conftest)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
import trio
from sqlalchemy import exc as sa_exc

from scanner.errors import StoreError
from scanner.inventory import tables
from scanner.inventory import write as store_write
from scanner.inventory.store import EndpointRecord, Inventory, db_url, default_db_path
from scanner.lab import certgen
from scanner.models import CertInfo, FailureKind, Handshake, Outcome, ScanFailure, Target
from scanner.parse import parse_certificate

T0 = datetime(2030, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)

Item = tuple[Outcome, tuple[CertInfo, ...]]


# --- helpers ------------------------------------------------------------------------------


def target(n: int, port: int = 443, sni: str | None = None) -> Target:
    return Target(address=f"127.0.9.{n}", port=port, sni=sni)


def handshake(tgt: Target, *certs: certgen.Issued, at: datetime = T0, **kw: object) -> Item:
    chain = tuple(c.der for c in certs)
    outcome = Handshake(
        target=tgt,
        started_at=at,
        chain=chain,
        tls_version="TLSv1.3",
        cipher="TLS_AES_128_GCM_SHA256",
        **kw,  # type: ignore[arg-type]
    )
    return outcome, tuple(parse_certificate(der) for der in chain)


def failure(
    tgt: Target, kind: FailureKind = FailureKind.RESET, at: datetime = T0, connected: bool = True
) -> Item:
    """A failure after the TCP connection was accepted (stored like any observation)."""
    detail = f"{kind.value}: detail"
    return ScanFailure(target=tgt, started_at=at, kind=kind, detail=detail, connected=connected), ()


def unparsable(tgt: Target, der: bytes) -> Item:
    info = CertInfo(der=der, sha256=hashlib.sha256(der).hexdigest(), error="not DER: junk")
    outcome = Handshake(target=tgt, started_at=T0, chain=(der,), tls_version="TLSv1.2", cipher="X")
    return outcome, (info,)


def by_address(records: list[EndpointRecord]) -> dict[tuple[str, int, str | None], EndpointRecord]:
    return {(r.address, r.port, r.sni): r for r in records}


# --- round trip ---------------------------------------------------------------------------


def test_round_trip_of_handshakes_and_failures(
    inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    plus_two = timezone(timedelta(hours=2))
    ok = handshake(
        target(1, sni="a.example"),
        pki["a"],
        pki["inter"],
        at=T0.astimezone(plus_two),
        alpn="h2",
        ocsp_staple=b"\x30\x03\x0a\x01\x00",
        connect_seconds=0.25,
        handshake_seconds=0.5,
    )
    needs_cert = handshake(target(2), pki["b"], pki["inter"], client_cert_requested=True)
    refused = failure(target(3, port=8443), FailureKind.TLS_ALERT)
    scan = inventory.start_scan(spec={"targets": ["127.0.9.0/24"]}, total=3)
    inventory.record_batch(scan, [ok, needs_cert, refused], watermark=3)

    got = by_address(inventory.latest_endpoints(include_failures=True))
    a = got[("127.0.9.1", 443, "a.example")]
    assert a.status == "ok"
    assert (a.tls_version, a.cipher, a.alpn, a.error) == (
        "TLSv1.3",
        "TLS_AES_128_GCM_SHA256",
        "h2",
        None,
    )
    assert a.observed_at == T0
    assert a.observed_at.tzinfo == UTC
    assert a.scan_id == scan
    assert a.chain == ok[1]  # every CertInfo field, DER included, exactly as parsed
    assert a.chain[0].not_after == pki["a"].cert.not_valid_after_utc
    assert got[("127.0.9.2", 443, None)].status == "client_cert_required"
    assert got[("127.0.9.2", 443, None)].chain == needs_cert[1]
    alert = got[("127.0.9.3", 8443, None)]
    assert (alert.status, alert.error, alert.chain, alert.tls_version) == (
        "tls_alert",
        "tls_alert: detail",
        (),
        None,
    )

    assert len(inventory.latest_endpoints()) == 2  # failures left out by default
    [run] = inventory.scans()
    assert (run.id, run.status, run.total, run.watermark) == (scan, "running", 3, 3)
    assert (run.done, run.ok, run.failed, run.finished_at) == (3, 2, 1, None)
    assert run.started_at.tzinfo == UTC


def test_hostile_certificate_text_round_trips(url: str, inventory: Inventory) -> None:
    weird = 'a\x00b \ud800 \x1b[31mred\x1b[0m \u202eevil\u202c 🔒 ﷽ \\,+="<>;'
    der = b"\x30\x03\x02\x01\x00 not really a certificate"
    info = CertInfo(
        der=der,
        sha256=hashlib.sha256(der).hexdigest(),
        field_errors=("subject: \x00 odd",),
        subject=f"CN={weird}",
        subject_cn=weird,
        issuer_o="\x00",
        serial="ff" * 300,
        version=3,
        not_before=datetime(1, 1, 1, tzinfo=UTC),
        not_after=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
        san_dns=("x\x00.example", "ok.example"),
        san_uri=("javascript:alert(1)",),
        key_bits=2**40,
        path_length=2**100,
        is_ca=False,
        sct_count=3,
    )
    outcome = Handshake(target=target(1), started_at=T0, chain=(der,), tls_version="x", cipher="y")
    detail = ScanFailure(
        target=target(2), started_at=T0, kind=FailureKind.NOT_TLS, detail=weird, connected=True
    )
    scan = inventory.start_scan(spec={}, total=2)
    inventory.record_batch(scan, [(outcome, (info,)), (detail, ())], watermark=2)

    got = by_address(inventory.latest_endpoints(include_failures=True))
    assert got[("127.0.9.1", 443, None)].chain == (info,)  # exact, from the JSON copy
    assert got[("127.0.9.2", 443, None)].error == weird.replace("\x00", "\ufffd").replace(
        "\ud800", "\ufffd"
    )
    with inventory.engine.connect() as conn:  # the filter columns hold a storable form
        cn, bits = conn.execute(
            sa.select(tables.CERTIFICATE.c.subject_cn, tables.CERTIFICATE.c.key_bits)
        ).one()
    assert cn == weird.replace("\x00", "\ufffd").replace("\ud800", "\ufffd")
    assert bits is None  # does not fit the column; the CertInfo keeps it


# --- deduplication and identity -----------------------------------------------------------


def test_certificates_are_stored_once(inventory: Inventory, pki: dict[str, certgen.Issued]) -> None:
    scan = inventory.start_scan(spec={"n": 1}, total=4)
    batch = [
        handshake(target(1), pki["a"], pki["inter"]),
        handshake(target(2), pki["b"], pki["inter"]),
        handshake(target(1, sni="a.example"), pki["a"], pki["inter"], pki["inter"]),
    ]
    inventory.record_batch(scan, batch, watermark=3)
    inventory.record_batch(scan, [handshake(target(4), pki["inter"], pki["root"])], watermark=4)

    stats = inventory.stats()
    assert (stats["certificates"], stats["endpoints"], stats["observations"]) == (4, 4, 4)
    known = inventory.known_certificates([batch[0][1][0].sha256, "00" * 32, batch[0][1][1].sha256])
    assert known == {batch[0][1][0].sha256, batch[0][1][1].sha256}
    repeated = by_address(inventory.latest_endpoints())[("127.0.9.1", 443, "a.example")]
    assert [c.sha256 for c in repeated.chain] == [c.sha256 for c in batch[2][1]]  # 3 positions


def test_a_certificate_stored_meanwhile_is_not_a_conflict(
    inventory: Inventory, pki: dict[str, certgen.Issued], monkeypatch: pytest.MonkeyPatch
) -> None:
    scan = inventory.start_scan(spec={}, total=2)
    inventory.record_batch(scan, [handshake(target(1), pki["a"])], watermark=1)
    # Another scanner stored it between our IN query and our INSERT (PostgreSQL, shared db).
    monkeypatch.setattr(store_write, "known", lambda conn, sha256s: set())
    inventory.record_batch(scan, [handshake(target(2), pki["a"])], watermark=2)
    assert inventory.stats()["certificates"] == 1


def test_one_endpoint_row_per_address_port_sni(
    url: str, inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    first = inventory.start_scan(spec={"n": 1}, total=2)
    inventory.record_batch(
        first,
        [handshake(target(1), pki["a"]), handshake(target(1, sni="a.example"), pki["a"])],
        watermark=2,
    )
    second = inventory.start_scan(spec={"n": 2}, total=1)
    later = T0 + timedelta(days=1)
    inventory.record_batch(second, [handshake(target(1), pki["b"], at=later)], watermark=1)

    assert inventory.stats()["endpoints"] == 2  # no-SNI and SNI are two endpoints
    latest = by_address(inventory.latest_endpoints())[("127.0.9.1", 443, None)]
    assert (latest.scan_id, latest.observed_at, latest.chain[0].subject_cn) == (
        second,
        later,
        "b.example",
    )
    old = by_address(inventory.latest_endpoints(scan_id=first))[("127.0.9.1", 443, None)]
    assert old.chain[0].subject_cn == "a.example"

    with inventory.engine.begin() as conn:
        seen = conn.execute(
            sa.select(tables.ENDPOINT.c.first_seen, tables.ENDPOINT.c.last_seen).where(
                tables.ENDPOINT.c.sni == ""
            )
        ).one()
    assert tuple(seen) == (T0, later)
    row = {"address": "127.0.9.1", "port": 443, "sni": "", "first_seen": T0, "last_seen": T0}
    with pytest.raises(sa_exc.IntegrityError), inventory.engine.begin() as conn:
        conn.execute(sa.insert(tables.ENDPOINT), row)  # '' is a value: the constraint holds


# --- scans, resume, crash safety ----------------------------------------------------------


def test_resume_returns_watermark_and_targets_stored_above_it(inventory: Inventory) -> None:
    spec = {"targets": ["127.0.9.0/28"], "ports": [443, 8443], "options": {"rate": None}}
    scan = inventory.start_scan(spec=spec, total=16)
    batch = [failure(target(i)) for i in (0, 1, 2, 4, 6)]
    inventory.record_batch(scan, batch, watermark=3, indices=[0, 1, 2, 4, 6])
    inventory.finish_scan(scan, "interrupted")

    same = {"options": {"rate": None}, "ports": [443, 8443], "targets": ["127.0.9.0/28"]}
    found = inventory.find_resumable(same)
    assert found is not None
    assert (found.id, found.status, found.watermark, found.done) == (scan, "interrupted", 3, 5)
    assert found.finished_at is not None
    assert inventory.find_resumable({**spec, "ports": [443]}) is None

    watermark, done = inventory.resume_scan(scan)
    assert (watermark, done) == (3, {("127.0.9.4", 443, None), ("127.0.9.6", 443, None)})
    resumed = inventory.scan(scan)
    assert resumed is not None
    assert (resumed.status, resumed.finished_at) == ("running", None)

    # Re-doing a stored target neither duplicates its observation nor counts it twice.
    inventory.record_batch(
        scan, [failure(target(4)), failure(target(3))], watermark=7, indices=[4, 3]
    )
    run = inventory.scan(scan)
    assert run is not None
    assert (run.watermark, run.done, run.failed, inventory.stats()["observations"]) == (7, 6, 6, 6)
    inventory.record_batch(scan, [], watermark=5)  # a watermark never moves back
    run = inventory.scan(scan)
    assert run is not None
    assert (run.watermark, run.done) == (7, 6)
    inventory.finish_scan(scan, "finished")
    assert inventory.find_resumable(spec) is None


def test_resume_without_indices_reports_every_stored_target(inventory: Inventory) -> None:
    scan = inventory.start_scan(spec={"x": 1}, total=4)
    inventory.record_batch(scan, [failure(target(0)), failure(target(2))], watermark=1)
    assert inventory.resume_scan(scan) == (1, {("127.0.9.0", 443, None), ("127.0.9.2", 443, None)})


def test_a_failed_batch_stores_nothing(
    inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    item = handshake(target(1), pki["a"])
    with pytest.raises(ValueError, match="no scan"):
        inventory.record_batch(12345, [item], watermark=1)
    with pytest.raises(ValueError, match="chain length"):
        inventory.record_batch(12345, [(item[0], ())], watermark=1)
    empty = {"scans": 0, "endpoints": 0, "certificates": 0, "observations": 0, "findings": 0}
    assert inventory.stats() == empty


_CRASHING_WRITER = """
import sys
from datetime import UTC, datetime
from scanner.models import FailureKind, ScanFailure, Target
from scanner.inventory import write as store_write
from scanner.inventory.store import Inventory

def item(i):
    target = Target(address=f"127.0.9.{i}", port=443)
    failure = ScanFailure(target=target, started_at=datetime.now(UTC), kind=FailureKind.TIMEOUT,
                          detail="timed out", connected=True)
    return failure, ()

inv = Inventory(sys.argv[1])
scan = inv.start_scan(spec={"crash": True}, total=6)
inv.record_batch(scan, [item(i) for i in range(3)], watermark=3)
store_observations = store_write._insert_observations

def stall(*args):
    inserted = store_observations(*args)
    print(scan, flush=True)  # the second batch is written but not committed
    sys.stdin.read()  # wait here until SIGKILL
    return inserted

store_write._insert_observations = stall
inv.record_batch(scan, [item(i) for i in range(3, 6)], watermark=6)
"""


def test_committed_batches_survive_sigkill(tmp_path: Path) -> None:
    url = db_url(str(tmp_path / "crash.db"))
    with subprocess.Popen(
        [sys.executable, "-c", _CRASHING_WRITER, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            scan = int(child.stdout.readline())
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    with Inventory(url) as inv:
        run = inv.scan(scan)
        assert run is not None
        assert (run.status, run.watermark, run.done) == ("running", 3, 3)
        stored = inv.latest_endpoints(include_failures=True)
        assert sorted(r.address for r in stored) == ["127.0.9.0", "127.0.9.1", "127.0.9.2"]
        assert inv.find_resumable({"crash": True}) == run


# --- listing ------------------------------------------------------------------------------


def test_latest_endpoints_sorts_soonest_expiry_first(
    inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    now = datetime.now(UTC)

    def expiring(days: float) -> certgen.Issued:
        start = now - timedelta(days=400)
        return certgen.make_leaf(
            pki["inter"], not_before=start, not_after=now + timedelta(days=days)
        )

    scan = inventory.start_scan(spec={}, total=7)
    items = [
        handshake(target(1), expiring(30), pki["inter"]),
        unparsable(target(2), b"junk that is not DER"),
        handshake(target(3), expiring(2)),
        failure(target(4)),
        handshake(target(5), expiring(-5)),
        handshake(target(6), expiring(400)),
    ]
    inventory.record_batch(scan, items, watermark=6)
    order = [r.address[-1] for r in inventory.latest_endpoints(include_failures=True)]
    assert order == ["5", "3", "1", "6", "2", "4"]
    assert [r.address[-1] for r in inventory.latest_endpoints()] == ["5", "3", "1", "6", "2"]

    # The latest observation wins: an endpoint that failed last time shows that failure.
    again = inventory.start_scan(spec={}, total=1)
    inventory.record_batch(again, [failure(target(3), at=T0 + timedelta(days=1))], watermark=1)
    assert "127.0.9.3" not in {r.address for r in inventory.latest_endpoints()}
    status = by_address(inventory.latest_endpoints(include_failures=True))[("127.0.9.3", 443, None)]
    assert status.status == "reset"


# --- opening ------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["proc", "directory", "under_a_file", "not_a_database"])
def test_unusable_sqlite_paths_raise_one_line_store_errors(tmp_path: Path, where: str) -> None:
    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "garbage.db").write_bytes(os.urandom(8192))
    path = {
        "proc": "/proc/certscan-test.db",
        "directory": str(tmp_path),
        "under_a_file": str(tmp_path / "file" / "inventory.db"),
        "not_a_database": str(tmp_path / "garbage.db"),
    }[where]
    with pytest.raises(StoreError) as caught:
        Inventory(db_url(path))
    message = str(caught.value)
    assert message.startswith("cannot open inventory sqlite:///")
    assert "\n" not in message
    assert "Traceback" not in message


def test_store_errors_hide_the_password() -> None:
    with pytest.raises(StoreError) as caught:
        Inventory("postgresql+psycopg://certscan:s3cret-pw@127.0.0.1:1/inventory")
    message = str(caught.value)
    assert "s3cret-pw" not in message
    assert "\n" not in message
    assert "certscan:***@127.0.0.1:1" in message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://u@127.0.0.1/x", "unsupported database 'mysql'"),
        ("postgresql+psycopg://127.0.0.1:notaport/x", "invalid database URL"),
    ],
)
def test_bad_urls(url: str, expected: str) -> None:
    with pytest.raises(StoreError, match=expected):
        Inventory(url)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    url = db_url(str(tmp_path / "inv.db"))
    with Inventory(url) as inv, inv.engine.begin() as conn:
        conn.execute(sa.update(tables.META).values(value="999"))
    with pytest.raises(StoreError, match="schema version 999"):
        Inventory(url)


def test_sqlite_settings(tmp_path: Path) -> None:
    path = tmp_path / "inv.db"
    with Inventory(str(path)) as inv, inv.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert path.exists()


async def test_usable_from_a_worker_thread(tmp_path: Path) -> None:
    inv = Inventory(db_url(str(tmp_path / "inv.db")))  # created on the event-loop thread
    try:
        scan = await trio.to_thread.run_sync(lambda: inv.start_scan(spec={}, total=1))
        batch = [failure(target(1))]
        await trio.to_thread.run_sync(lambda: inv.record_batch(scan, batch, watermark=1))
        records = await trio.to_thread.run_sync(lambda: inv.latest_endpoints(include_failures=True))
        assert [r.address for r in records] == ["127.0.9.1"]
    finally:
        inv.close()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "postgresql+psycopg://u:p@db.internal/certs",
            "postgresql+psycopg://u:p@db.internal/certs",
        ),
        ("sqlite:///relative.db", "sqlite:///relative.db"),
        ("/var/lib/certscan/a b?.db", "sqlite:////var/lib/certscan/a b%3F.db"),
    ],
)
def test_db_url(value: str, expected: str) -> None:
    assert db_url(value) == expected


def test_default_path_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_db_path() == tmp_path / "certscan" / "inventory.db"
    assert db_url(None) == f"sqlite:///{tmp_path}/certscan/inventory.db"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    assert default_db_path() == Path.home() / ".local/share/certscan/inventory.db"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_db_path() == Path.home() / ".local/share/certscan/inventory.db"
    assert db_url("rel.db") == f"sqlite:///{Path.cwd() / 'rel.db'}"


def test_unanswered_targets_are_counted_not_stored(inventory: Inventory) -> None:
    scan = inventory.start_scan(spec={}, total=3)
    quiet = [failure(target(n), FailureKind.REFUSED, connected=False) for n in (1, 2, 3)]
    inventory.record_batch(scan, quiet, watermark=3)
    stats = inventory.stats()
    assert stats["observations"] == 0
    assert stats["endpoints"] == 0
    (run,) = inventory.scans()
    assert (run.done, run.failed, run.ok, run.watermark) == (3, 3, 0, 3)
    # Redone after a resume: still counted once at most.
    inventory.record_batch(scan, quiet[:1], watermark=3)
    (run,) = inventory.scans()
    assert run.done == 3


def test_an_explicit_path_in_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent" / "dir"
    with pytest.raises(StoreError) as caught:
        Inventory(db_url(str(missing / "x.db")))
    assert str(caught.value) == (
        f"cannot open inventory sqlite:///{missing}/x.db: directory {missing} does not exist"
    )
    assert not (tmp_path / "nonexistent").exists()  # nothing was created


def test_the_default_directory_is_created(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    Inventory(db_url(None)).close()
    assert (tmp_path / "xdg" / "certscan" / "inventory.db").is_file()
