"""scanner.zones.messages and app helpers: pure round trips and refusals (no broker)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from scanner.engine.discovery import DiscoveryOptions
from scanner.errors import UsageError
from scanner.models import EngineLimits, FailureKind, Progress, ScanFailure, Target
from scanner.zones import app as zapp
from scanner.zones.messages import (
    Attempt,
    BatchMessage,
    PlanInputs,
    ShardFinished,
    ShardStarted,
    ShardTask,
)
from scanner.zones.wire import WireError

INPUTS = PlanInputs(
    specs=("10.0.0.0/28", "host.example:8443"),
    ports=(443, 2525),
    excludes=("10.0.0.3",),
    resolved=(("host.example", ("10.1.0.1", "10.1.0.2")),),
    protocols=((2525, "smtp"),),
)
KEY = Attempt(
    scan_id=4, shard=1, attempt="ab" * 16, attempt_started_at=datetime(2026, 1, 1, tzinfo=UTC)
)


def task() -> ShardTask:
    return ShardTask(
        scan_id=4,
        shard=1,
        shards=3,
        seed=99,
        total=INPUTS.build().count,
        plan=INPUTS,
        limits=EngineLimits(rate=50.0, all_certs=True),
        discovery=DiscoveryOptions(sources=frozenset({"san"}), names=("a.example",)),
        ingest_queue="certscan.ingest",
    )


def through_json(data: dict[str, Any]) -> Any:
    return json.loads(json.dumps(data))


def test_shard_task_round_trips_and_rebuilds_the_same_shard() -> None:
    sent = task()
    back = ShardTask.from_wire(through_json(sent.to_wire()))
    assert back == sent
    shard = back.sharded_plan()
    assert shard.count == back.count
    assert list(shard.iter_from(0)) == list(sent.sharded_plan().iter_from(0))
    # The resolved name is used as resolved by the dispatcher, not looked up again.
    assert {t.address for _, t in shard.iter_from(0) if t.sni == "host.example"} <= {
        "10.1.0.1",
        "10.1.0.2",
    }


def test_a_plan_that_rebuilds_differently_is_refused() -> None:
    wrong = ShardTask.from_wire({**task().to_wire(), "total": 5})
    with pytest.raises(WireError, match="same certscan version"):
        wrong.sharded_plan()


def test_agent_messages_round_trip() -> None:
    failure = ScanFailure(
        target=Target(address="10.0.0.1", port=443),
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        kind=FailureKind.REFUSED,
        detail="refused",
    )
    progress = Progress(3, 3, 0, 3)
    for message, kind in [
        (ShardStarted(key=KEY, agent="host/1"), ShardStarted),
        (
            BatchMessage(key=KEY, seq=0, outcomes=(failure,), indices=(2,), progress=progress),
            BatchMessage,
        ),
        (ShardFinished(key=KEY, batches=1, progress=progress, error=None), ShardFinished),
    ]:
        assert kind.from_wire(through_json(message.to_wire())) == message


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"v": 2}, "version"),
        ({"v": True}, "version"),
        ({"type": "batch"}, "wrong message type"),
        ({"shard": 3}, "shard"),
        ({"seed": -1}, "seed"),
        ({"limits": {"concurrency": 0}}, "limits.concurrency"),
        ({"limits": {"rate": "fast"}}, "rate"),
        ({"limits": {"turbo": True}}, "unknown field"),
        ({"plan": {**INPUTS.to_wire(), "ports": [70000]}}, "plan.ports"),
        ({"plan": {**INPUTS.to_wire(), "specs": "10.0.0.1"}}, "plan.specs"),
        ({"discovery": {"sources": ["san"], "names": [], "max_names": "x"}}, "max_names"),
        ({"extra": 1}, "unknown field"),
    ],
)
def test_malformed_shard_tasks_are_refused(change: dict[str, Any], needle: str) -> None:
    with pytest.raises(WireError, match=needle):
        ShardTask.from_wire({**task().to_wire(), **change})


def test_malformed_batches_are_refused() -> None:
    good = BatchMessage(key=KEY, seq=0, outcomes=(), indices=(), progress=Progress(0, 0, 0, 0))
    data = good.to_wire()
    for change, needle in [
        ({"indices": [1]}, "not one per item"),
        ({"indices": [-2]}, "indices"),
        ({"attempt": "x" * 32}, "hex"),
        ({"seq": -1}, "seq"),
        ({"items": [{}] * 2001}, "more than 2000"),
        ({"progress": {"watermark": 0, "done": 0, "ok": 0}}, "failed: missing"),
        ({"attempt_started_at": "2026-01-01T00:00:00"}, "UTC"),
    ]:
        with pytest.raises(WireError, match=needle):
            BatchMessage.from_wire({**data, **change})
    with pytest.raises(WireError, match="expected an object"):
        BatchMessage.from_wire(["not", "a", "dict"])


@pytest.mark.parametrize("zone", ["dmz", "0", "zone_a-1", "a" * 63])
def test_good_zone_names(zone: str) -> None:
    assert zapp.zone_queue(zone) == f"certscan.zone.{zone}"


@pytest.mark.parametrize("zone", ["", "DMZ", "-dmz", "_dmz", "a" * 64, "dmz.1", "dmz zone", "é"])
def test_bad_zone_names(zone: str) -> None:
    with pytest.raises(UsageError, match="zone"):
        zapp.zone_queue(zone)


def test_broker_urls() -> None:
    assert (
        zapp.safe_url("amqp://guest:secret@10.0.0.1:5672//") == "amqp://guest:***@10.0.0.1:5672//"
    )
    assert zapp.safe_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert zapp.safe_url("redis://:pw@[::1]:6379/0") == "redis://:***@[::1]:6379/0"
    assert zapp.broker_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    with pytest.raises(UsageError, match="amqp:// or redis://") as refused:
        zapp.broker_url("http://u:secret@host/")
    assert "secret" not in str(refused.value)


def test_big_batches_are_split_under_the_bounds() -> None:
    import os as _os

    from scanner.models import Handshake
    from scanner.zones.agent import MESSAGE_DER_BYTES, split_batch

    def handshake(n: int, chain: tuple[bytes, ...]) -> Handshake:
        return Handshake(
            target=Target(address=f"10.0.0.{n}", port=443),
            started_at=datetime(2026, 1, 1, tzinfo=UTC),
            chain=chain,
            tls_version="TLSv1.3",
            cipher="X",
        )

    shared = _os.urandom(1000)
    # Five endpoints each presenting 1.5 MiB of certificates of their own, plus one shared.
    big = [handshake(n, (*(_os.urandom(256 * 1024) for _ in range(6)), shared)) for n in range(5)]
    small = [handshake(10 + n, (shared,)) for n in range(3)]
    outcomes = [*big, *small]
    parts = list(split_batch(outcomes, list(range(8))))
    assert [o for p, _ in parts for o in p] == outcomes
    assert [i for _, p in parts for i in p] == list(range(8))
    assert len(parts) == 3
    for part, _ in parts:
        certs = {der for o in part for der in o.chain}
        assert sum(map(len, certs)) <= MESSAGE_DER_BYTES
        message = BatchMessage(
            key=KEY, seq=0, outcomes=part, indices=(0,) * len(part), progress=Progress(0, 0, 0, 0)
        )
        assert BatchMessage.from_wire(through_json(message.to_wire())) == message
    many = [handshake(1, ()) for _ in range(4500)]
    assert [len(p) for p, _ in split_batch(many, [0] * 4500)] == [2000, 2000, 500]


def test_shard_task_carries_discover_only_when_given() -> None:
    from dataclasses import replace

    from scanner.sweep.modes import DiscoverOptions

    plain = task().to_wire()
    assert "discover" not in plain  # what an older agent accepts
    assert ShardTask.from_wire(through_json(plain)).discover is None
    sent = replace(task(), discover=DiscoverOptions(mode="syn", retries=2, wait=0.5))
    back = ShardTask.from_wire(through_json(sent.to_wire()))
    assert back.discover == DiscoverOptions(mode="syn", retries=2, wait=0.5)


@pytest.mark.parametrize(
    ("discover", "needle"),
    [
        ({"mode": "fast", "retries": 1, "wait": 1.0}, "--discover"),
        ({"mode": "syn", "retries": 99, "wait": 1.0}, "retries"),
        ({"mode": "syn", "retries": 1, "wait": 600}, "--syn-wait"),
        ({"mode": "syn", "retries": 1, "wait": True}, "wait"),
        ({"mode": "syn", "retries": 1, "wait": 1.0, "rate": 9}, "rate"),
        ("syn", "discover"),
    ],
)
def test_malformed_discover_is_refused(discover: object, needle: str) -> None:
    with pytest.raises(WireError, match=needle):
        ShardTask.from_wire({**task().to_wire(), "discover": discover})


def test_one_bad_item_is_dropped_not_the_batch() -> None:
    good = ScanFailure(
        target=Target(address="10.0.0.1", port=443),
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        kind=FailureKind.REFUSED,
        detail="refused",
    )
    sent = BatchMessage(
        key=KEY, seq=3, outcomes=(good, good), indices=(0, 1), progress=Progress(2, 2, 0, 2)
    ).to_wire()
    sent["items"].insert(1, {"type": "failure", "target": {"address": "10.0.0.01"}})
    sent["indices"].insert(1, 1)
    sent["items"].append(sent["items"][0])
    sent["indices"].append(True)  # not an integer
    back = BatchMessage.from_wire(through_json(sent))
    assert back.outcomes == (good, good)
    assert back.indices == (0, 1)
    assert back.dropped == 2
    assert back.problem is not None
    assert "to_wire" not in str(back.problem)
    assert "dropped" not in back.to_wire()
    with pytest.raises(WireError, match="not one per item"):
        BatchMessage.from_wire({**sent, "indices": [0]})
