"""Sharded scans in the inventory, on SQLite and PostgreSQL: local shard counters and resume,
idempotent ingest of distributed batches (duplicates, redelivered attempts, late messages), the
one call that settles a scan, and concurrent writers upserting overlapping endpoints."""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest

from scanner.inventory.store import Inventory
from scanner.lab import certgen
from scanner.models import FailureKind, Progress, ScanFailure
from tests.scanner.inventory.test_store import T0, Item, handshake, target

#: Attempt start times: ingest accepts them only near its own clock (scanner.inventory.zone).
A0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)


def a_minute_ago() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)


@pytest.fixture(autouse=True)
def _fresh_a0(monkeypatch: pytest.MonkeyPatch) -> None:
    """``A0``, the agents' attempt start, a minute before each test rather than before the
    module was imported: ingest accepts attempt times from the shard's queue time less 10
    minutes, and a long suite can run this module later than that."""
    monkeypatch.setattr(sys.modules[__name__], "A0", a_minute_ago())


def refused(n: int) -> Item:
    failure = ScanFailure(
        target=target(n), started_at=T0, kind=FailureKind.REFUSED, detail="refused"
    )
    return failure, ()


def sharded_scan(inv: Inventory, totals: list[int], zone: str | None = None) -> int:
    scan = inv.start_scan(spec={"sharded": totals}, total=sum(totals), shards=len(totals))
    inv.add_shards(scan, totals, zone=zone)
    return scan


def test_local_shards_count_and_resume_on_their_own(
    inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    scan = sharded_scan(inventory, [3, 2])
    inventory.add_shards(scan, [99, 99])  # existing shards are kept as they are
    inventory.mark_shard(scan, 0, "running", agent="host/1")
    inventory.record_batch(
        scan,
        [handshake(target(1), pki["a"]), refused(2)],
        watermark=1,
        indices=[0, 2],
        shard=0,
    )
    inventory.record_batch(
        scan, [handshake(target(3), pki["b"])], watermark=1, indices=[0], shard=1
    )
    shards = {s.shard: s for s in inventory.shards(scan)}
    assert (shards[0].total, shards[0].done, shards[0].ok, shards[0].failed) == (3, 2, 1, 1)
    assert (shards[1].done, shards[1].ok, shards[1].watermark) == (1, 1, 1)
    assert shards[0].status == "running"
    assert shards[0].agent == "host/1"
    assert shards[1].status == "queued"
    run = inventory.scan(scan)
    assert run is not None
    assert (run.shards, run.done, run.ok, run.failed) == (2, 3, 2, 1)
    # Each shard resumes at its own watermark and knows what it stored above it.
    assert inventory.resume_shard(scan, 0) == (1, set())
    inventory.record_batch(
        scan, [handshake(target(4), pki["a"])], watermark=1, indices=[3], shard=1
    )
    assert inventory.resume_shard(scan, 1) == (1, {("127.0.9.4", 443, None)})
    inventory.mark_shard(scan, 1, "done")
    assert inventory.shard_counts([scan]) == {scan: {"running": 1, "done": 1}}
    with pytest.raises(ValueError, match="no shard 7"):
        inventory.record_batch(scan, [refused(9)], watermark=1, indices=[0], shard=7)


def _ingest(
    inv: Inventory, scan: int, shard: int, attempt: str, seq: int, items: list[Item], **kw: object
) -> bool:
    progress = kw.pop("progress", Progress(len(items), len(items), len(items), 0))
    started = kw.pop("started", A0)
    rejected = kw.pop("rejected", 0)
    return inv.ingest_batch(
        scan,
        shard,
        attempt=attempt,
        attempt_started_at=started,  # type: ignore[arg-type]
        seq=seq,
        items=items,
        indices=list(range(len(items))),
        alt_chains=None,
        progress=progress,  # type: ignore[arg-type]
        rejected=rejected,  # type: ignore[arg-type]
    )


def test_duplicated_batches_and_attempts_change_nothing(
    inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    scan = sharded_scan(inventory, [2, 1], zone="dmz")
    first = [handshake(target(1), pki["a"]), handshake(target(2), pki["b"])]
    assert inventory.shard_started(scan, 0, attempt="a1", started_at=A0, agent="h/1")
    assert _ingest(inventory, scan, 0, "a1", 0, first)
    before = inventory.stats()
    assert not _ingest(inventory, scan, 0, "a1", 0, first)  # the same message again
    assert inventory.stats() == before
    # The agent died; the redelivered task starts attempt a2, which takes the shard over and
    # redoes the same targets: nothing new is stored, and progress is counted once.
    later = A0 + timedelta(minutes=1)
    assert inventory.shard_started(scan, 0, attempt="a2", started_at=later, agent="h/2")
    shard0 = inventory.shards(scan)[0]
    assert (shard0.attempt, shard0.attempts, shard0.done) == ("a2", 2, 0)
    assert _ingest(inventory, scan, 0, "a2", 0, first, started=later)
    assert inventory.stats() == before
    # A late message of the dead attempt is stored (idempotently) but counts for nothing.
    assert _ingest(inventory, scan, 0, "a1", 1, [refused(5)], progress=Progress(9, 9, 0, 9))
    assert inventory.shards(scan)[0].done == 2
    stale = inventory.shard_finished(
        scan, 0, attempt="a1", attempt_started_at=A0, batches=2, progress=Progress(2, 2, 2, 0)
    )
    assert stale.state == "stale"
    # a2 announces 2 batches but only one is in: not done yet.
    early = inventory.shard_finished(
        scan, 0, attempt="a2", attempt_started_at=later, batches=2, progress=Progress(2, 2, 2, 0)
    )
    assert early.state == "incomplete"
    # The finish is kept: the batch it waited for settles the shard, no retry needed.
    assert _ingest(inventory, scan, 0, "a2", 1, [], progress=Progress(2, 2, 2, 0), started=later)
    shard0 = inventory.shards(scan)[0]
    assert (shard0.status, shard0.announced, shard0.done) == ("done", 2, 2)
    assert inventory.settled_scans() == []
    again = inventory.shard_finished(
        scan, 0, attempt="a2", attempt_started_at=later, batches=2, progress=Progress(2, 2, 2, 0)
    )
    assert again.state == "stale"
    # A duplicate task for a settled shard is told so.
    assert not inventory.shard_started(
        scan, 0, attempt="a3", started_at=later + timedelta(minutes=5), agent="x"
    )
    # Shard 1: its batch arrives before its start message (adopted), then it fails.
    assert _ingest(inventory, scan, 1, "b1", 0, [handshake(target(3), pki["a"])])
    settled = inventory.shard_finished(
        scan,
        1,
        attempt="b1",
        attempt_started_at=A0,
        batches=1,
        progress=Progress(1, 1, 1, 0),
        error="agent gave up",
    )
    assert settled.state == "failed"
    assert settled.scan_settled
    run = inventory.scan(scan)
    assert run is not None
    assert (run.done, run.ok, run.failed) == (3, 3, 0)
    assert {s.status for s in inventory.shards(scan)} == {"done", "failed"}
    assert inventory.shards(scan)[1].error == "agent gave up"
    assert inventory.settled_scans() == [scan]


WRITERS = 4


def test_concurrent_writers_upsert_overlapping_endpoints_exactly(
    url: str, pki: dict[str, certgen.Issued]
) -> None:
    """4 threads, each with its own connection, write overlapping endpoints (30 distinct, each
    writer 20 of them, in different orders) into their own scans and into one shared sharded
    scan; every row count is exact."""
    setup = Inventory(url)
    shared = sharded_scan(setup, [20] * WRITERS)
    own = [setup.start_scan(spec={"writer": i}, total=20) for i in range(WRITERS)]
    certs = [pki["a"], pki["b"], pki["leaf"]] if "leaf" in pki else [pki["a"], pki["b"]]
    errors: list[BaseException] = []
    barrier = threading.Barrier(WRITERS)

    def write(i: int) -> None:
        inv = Inventory(url)
        try:
            numbers = [(i * 10 + k) % 30 for k in range(20)]
            if i % 2:
                numbers.reverse()
            items = [handshake(target(n), certs[n % len(certs)]) for n in numbers]
            barrier.wait(timeout=30)
            for start in range(0, 20, 5):
                part = items[start : start + 5]
                inv.record_batch(
                    own[i], part, watermark=start + 5, indices=list(range(start, start + 5))
                )
                inv.record_batch(
                    shared,
                    part,
                    watermark=start + 5,
                    indices=list(range(start, start + 5)),
                    shard=i,
                )
        except BaseException as exc:
            errors.append(exc)
        finally:
            inv.close()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    stats = setup.stats()
    assert stats["endpoints"] == 30
    assert stats["certificates"] == len({c.der for c in certs})
    # Each writer's own scan observed its 20 endpoints; the shared scan each endpoint once.
    assert stats["observations"] == WRITERS * 20 + 30
    for scan in own:
        run = setup.scan(scan)
        assert run is not None
        assert (run.done, run.ok) == (20, 20)
    assert [len(setup.latest_endpoints(scan_id=s)) for s in own] == [20] * WRITERS
    assert len(setup.latest_endpoints(scan_id=shared)) == 30
    setup.close()


def test_a_hostile_certificate_round_trips_through_ingest(
    inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    """A real certificate whose subject holds NUL, a lone surrogate's neighbours and terminal
    escapes: what comes back from either back end is what parsing its DER gives."""
    from scanner.parse import parse_certificate

    evil = certgen.make_leaf(
        pki["inter"],
        cn="evil\x00.example \x1b[31m\u202e",
        org="O\x00rg",
        dns_names=["evil.example"],
    )
    scan = sharded_scan(inventory, [1], zone="dmz")
    item = handshake(target(1), evil, pki["inter"])
    assert _ingest(inventory, scan, 0, "a", 0, [item])
    [record] = inventory.latest_endpoints(scan_id=scan)
    assert record.chain == tuple(parse_certificate(c.der) for c in record.chain)
    assert record.chain[0].der == evil.der
    assert record.chain[0].subject_cn == "evil\x00.example \x1b[31m\u202e"
    assert record.chain[0].subject_o == "O\x00rg"
