"""Zone ingest in the inventory, on SQLite and PostgreSQL: which messages may change which
shard, counters that cannot overflow, a finish kept until its batches land, settling by state,
dead letters and requeueing (scanner.inventory.zone)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import pytest

from scanner.inventory.shards import ShardRejected
from scanner.inventory.store import Inventory
from scanner.lab import certgen
from scanner.models import Progress
from tests.scanner.inventory.test_shards import A0, _ingest, a_minute_ago, refused, sharded_scan
from tests.scanner.inventory.test_store import handshake, target


@pytest.fixture(autouse=True)
def _fresh_a0(monkeypatch: pytest.MonkeyPatch) -> None:
    """``A0`` a minute before each test (see test_shards): this module's own name for it, and
    the one ``_ingest`` reads."""
    now = a_minute_ago()
    monkeypatch.setattr(sys.modules[__name__], "A0", now)
    monkeypatch.setattr(sys.modules["tests.scanner.inventory.test_shards"], "A0", now)


def test_a_local_shard_cannot_be_taken_over(
    inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    scan = sharded_scan(inventory, [2, 2])  # sweep --workers: no zone
    inventory.mark_shard(scan, 0, "running", agent="host/1")
    with pytest.raises(ShardRejected, match="not dispatched to a zone"):
        inventory.shard_started(scan, 0, attempt="evil", started_at=A0, agent="x")
    with pytest.raises(ShardRejected, match="not dispatched to a zone"):
        _ingest(inventory, scan, 1, "evil", 0, [handshake(target(1), pki["a"])])
    with pytest.raises(ShardRejected, match="not dispatched to a zone"):
        inventory.shard_finished(
            scan, 0, attempt="evil", attempt_started_at=A0, batches=0, progress=Progress(2, 2, 2, 0)
        )
    shards = inventory.shards(scan)
    assert [(s.status, s.attempt, s.done) for s in shards] == [
        ("running", None, 0),
        ("queued", None, 0),
    ]
    assert inventory.stats()["observations"] == 0


def test_attempt_times_are_bounded_and_only_running_scans_change(
    inventory: Inventory,
) -> None:
    scan = sharded_scan(inventory, [2], zone="dmz")
    far = datetime(9999, 1, 1, tzinfo=UTC)
    for when in (far, A0 + timedelta(hours=2), A0 - timedelta(days=1)):
        with pytest.raises(ShardRejected, match="attempt start"):
            inventory.shard_started(scan, 0, attempt="a", started_at=when, agent="x")
    with pytest.raises(ShardRejected, match="no shard 5"):
        inventory.shard_started(scan, 5, attempt="a", started_at=A0, agent="x")
    with pytest.raises(ShardRejected, match="no scan 999"):
        inventory.shard_started(999, 0, attempt="a", started_at=A0, agent="x")
    inventory.finish_scan(scan, "failed")
    with pytest.raises(ShardRejected, match="failed, not running"):
        _ingest(inventory, scan, 0, "a", 0, [refused(1)])


def test_counters_are_capped_and_never_overflow(inventory: Inventory) -> None:
    scan = sharded_scan(inventory, [3, 4], zone="dmz")
    huge = Progress(2**62, 2**62, 2**62, 2**62)
    for shard in (0, 1):
        assert _ingest(inventory, scan, shard, f"a{shard}", 0, [refused(shard)], progress=huge)
    shards = inventory.shards(scan)
    assert [(s.watermark, s.done, s.ok, s.failed) for s in shards] == [
        (3, 3, 3, 0),
        (4, 4, 4, 0),
    ]
    # ok + failed == done, whatever the message claims.
    assert _ingest(inventory, scan, 0, "a0", 1, [], progress=Progress(1, 3, 1, 99))
    (first, _) = inventory.shards(scan)
    assert (first.done, first.ok, first.failed) == (3, 1, 2)
    finished = inventory.shard_finished(
        scan, 1, attempt="a1", attempt_started_at=A0, batches=1, progress=huge
    )
    assert finished.state == "done"
    run = inventory.scan(scan)
    assert run is not None
    assert (run.done, run.ok, run.failed) == (7, 5, 2)
    # Messages for the scan are still accepted.
    assert _ingest(inventory, scan, 0, "a0", 2, [refused(7)], progress=Progress(3, 3, 3, 0))


def test_a_finish_before_its_batches_settles_with_the_last_one(inventory: Inventory) -> None:
    scan = sharded_scan(inventory, [2], zone="dmz")
    early = inventory.shard_finished(
        scan, 0, attempt="a", attempt_started_at=A0, batches=2, progress=Progress(2, 2, 1, 1)
    )
    assert early.state == "incomplete"
    assert inventory.settled_scans() == []
    assert _ingest(inventory, scan, 0, "a", 1, [refused(2)], progress=Progress(2, 2, 1, 1))
    assert inventory.shards(scan)[0].status == "running"
    assert _ingest(inventory, scan, 0, "a", 0, [refused(1)], progress=Progress(1, 1, 1, 0))
    (shard,) = inventory.shards(scan)
    assert (shard.status, shard.done, shard.ok, shard.failed) == ("done", 2, 1, 1)
    assert inventory.settled_scans() == [scan]


def test_rejected_dead_letters_and_requeue(inventory: Inventory) -> None:
    scan = sharded_scan(inventory, [2, 2], zone="dmz")
    assert _ingest(inventory, scan, 0, "a", 0, [refused(1)], rejected=3)
    assert not _ingest(inventory, scan, 0, "a", 0, [refused(1)], rejected=3)  # a duplicate
    inventory.dead_letter(scan, 1)
    inventory.shard_finished(
        scan, 1, attempt="b", attempt_started_at=A0, batches=0, progress=Progress(0, 0, 0, 0),
        error="agent refused",
    )  # fmt: skip
    shards = inventory.shards(scan)
    assert [(s.rejected, s.dead_letters) for s in shards] == [(3, None), (None, 1)]
    assert shards[1].status == "failed"
    assert inventory.requeue_shards(scan, 1) == [1]
    assert inventory.requeue_shards(scan) == [0, 1]  # shard 0 is still running: stuck
    again = inventory.shards(scan)
    assert [(s.status, s.attempt, s.error) for s in again] == [("queued", None, None)] * 2
    run = inventory.scan(scan)
    assert run is not None
    assert run.status == "running"
