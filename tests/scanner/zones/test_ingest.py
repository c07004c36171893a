"""Ingest against a forging agent and a dying ingester: real RabbitMQ, real PostgreSQL, the
loopback lab, ``certscan dispatch``/``agent``/``ingest`` as real processes. The forged messages
are what a compromised agent holding the zone's broker credentials could publish."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio

from scanner.lab import certgen
from scanner.lab import servers as lab_mod
from scanner.models import Handshake, Progress, Target
from scanner.zones import app as zapp
from scanner.zones.ingest import Ingest
from scanner.zones.messages import Attempt, BatchMessage, ShardFinished, ShardStarted, ShardTask
from tests.scanner.zones.conftest import Queues, counts, query, scan_status, wait_for, workers
from tests.scanner.zones.conftest import certscan as run
from tests.scanner.zones.test_zones import TIMES, dispatch, finished, lab_specs


def forged(target: Target, der: bytes, at: datetime) -> Handshake:
    return Handshake(target=target, started_at=at, chain=(der,), tls_version="TLSv1.3", cipher="X")


def send(broker: str, queue: str, task: str, message: dict[str, Any]) -> None:
    app = zapp.make_app(broker)
    try:
        zapp.publish(app, task, message, queue)
    finally:
        app.close()


def stored_task(db: str, scan_id: int) -> ShardTask:
    ((text,),) = query(db, "select task from scan_plan where scan_id = :id", id=scan_id)
    return ShardTask.from_wire(json.loads(text))


async def test_a_forged_batch_stores_only_what_the_plan_allows(
    lab: lab_mod.Lab, queues: Queues, pg_url: str, tmp_path: Path
) -> None:
    sent = await dispatch(
        queues, pg_url, *lab_specs(lab)[:3], *TIMES, "--shard-size", "100000", "--seed", "1"
    )
    scan_id = sent["scan_id"]
    plan = stored_task(pg_url, scan_id).sharded_plan()
    real = plan.at(0)
    # A long-lived fake certificate for a real target, dated far in the future; a target that
    # is not in the plan; a follow-up whose SNI is markup and a newline; a malformed item.
    fake = certgen.make_leaf(certgen.make_ca(), cn="fake.example", days=36500)
    now = datetime.now(UTC)
    key = Attempt(scan_id=scan_id, shard=0, attempt=uuid.uuid4().hex, attempt_started_at=now)
    future = datetime(9999, 1, 1, tzinfo=UTC)
    batch = BatchMessage(
        key=key,
        seq=0,
        outcomes=(
            forged(real, fake.der, future),
            forged(Target(address="127.99.99.99", port=443), fake.der, now),
            forged(
                Target(address=real.address, port=real.port, sni="x\n<script>.example"),
                fake.der,
                now,
            ),
        ),
        indices=(0, 1, -1),
        progress=Progress(1, 1, 1, 0),
    ).to_wire()
    batch["items"].append({"type": "handshake", "target": "nonsense"})
    batch["indices"].append(2)
    done = ShardFinished(key=key, batches=1, progress=Progress(3, 3, 3, 0), error=None)
    # A second forged finish for a shard that does not exist, and one with a 9999 attempt.
    bad_shard = {**done.to_wire(), "shard": 7}
    late = Attempt(scan_id=scan_id, shard=0, attempt="f" * 32, attempt_started_at=future)
    for task, message in (
        (zapp.STARTED_TASK, ShardStarted(key=key, agent="evil/1").to_wire()),
        (zapp.BATCH_TASK, batch),
        (zapp.STARTED_TASK, ShardStarted(key=late, agent="evil/2").to_wire()),
        (zapp.FINISHED_TASK, bad_shard),
        (zapp.FINISHED_TASK, done.to_wire()),
    ):
        await trio.to_thread.run_sync(send, queues.broker, queues.ingest_queue, task, message)
    async with workers(queues.broker, tmp_path) as crew:
        await crew.start("ingest", "--db", pg_url, "--ingest-queue", queues.ingest_queue)
        status = await wait_for("the scan to settle", lambda: finished(pg_url, scan_id), crew)
        log = crew.output()
    assert status == "finished"
    endpoints = query(pg_url, "select address, port, sni from endpoint")
    assert endpoints == [(real.address, real.port, real.sni or "")]
    ((observed,),) = query(pg_url, "select observed_at from observation")
    assert observed <= datetime.now(UTC)
    assert observed >= now - timedelta(minutes=11)
    ((rejected, done_count, ok, failed, attempt),) = query(
        pg_url, "select rejected, done, ok, failed, attempt from scan_shard"
    )
    assert rejected == 3  # outside, hostile SNI, malformed
    assert (done_count, ok, failed) == (3, 3, 0)  # capped at the shard's total of 3
    assert attempt == key.attempt  # the 9999 attempt did not take the shard over
    assert f"scan {scan_id} has no shard 7" in log
    assert "attempt start 9999-01-01" in log
    assert "Traceback" not in log


def _decoded(body: Any) -> dict[str, Any]:
    value = json.loads(body) if isinstance(body, str | bytes) else body
    message: dict[str, Any] = value[0][0]
    return message


async def test_a_scan_settles_after_the_ingester_that_settled_it_died(
    lab: lab_mod.Lab, queues: Queues, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.scanner.zones.test_zones import take_all

    async with workers(queues.broker, tmp_path) as crew:
        await crew.start("agent", "--zone", queues.zone)
        sent = await dispatch(
            queues, pg_url, *lab_specs(lab), *TIMES, "--shard-size", "4", "--seed", "2"
        )
        await wait_for(
            "the agent to finish every shard",
            lambda: crew.output().count(" batches, ") >= sent["shards"],
            crew,
        )
    messages = [_decoded(body) for body, _, _ in take_all(queues.broker, queues.ingest_queue)]
    # What an ingester committed before it died: every message stored, the scan not closed.
    ingest = Ingest(pg_url)
    for message in messages:
        match message["type"]:
            case "shard_started":
                ingest.started(ShardStarted.from_wire(message))
            case "batch":
                ingest.batch(BatchMessage.from_wire(message))
            case "shard_finished":
                ingest.finished(ShardFinished.from_wire(message))
    ingest.inventory.close()
    scan_id = sent["scan_id"]
    assert scan_status(pg_url, scan_id) == "running"
    assert {s for (s,) in query(pg_url, "select status from scan_shard")} == {"done"}
    assert counts(pg_url)["finding"] == 0
    # A new ingester, with nothing on its queue, closes it by state.
    monkeypatch.setenv("CERTSCAN_SETTLE_SECONDS", "1")
    (tmp_path / "again").mkdir()
    async with workers(queues.broker, tmp_path / "again") as crew:
        await crew.start("ingest", "--db", pg_url, "--ingest-queue", queues.ingest_queue)
        status = await wait_for("the scan to settle", lambda: finished(pg_url, scan_id), crew)
    assert status == "finished"
    assert counts(pg_url)["finding"] > 0


async def test_an_agent_refuses_targets_outside_its_policy_and_scans_retry(
    lab: lab_mod.Lab, queues: Queues, pg_url: str, tmp_path: Path
) -> None:
    async with workers(queues.broker, tmp_path) as crew:
        await crew.start("ingest", "--db", pg_url, "--ingest-queue", queues.ingest_queue)
        strict = await crew.start("agent", "--zone", queues.zone, "--allow", "127.0.0.0/30")
        sent = await dispatch(queues, pg_url, *lab_specs(lab)[:2], *TIMES, "--seed", "4")
        scan_id = sent["scan_id"]
        status = await wait_for("the scan to end", lambda: finished(pg_url, scan_id), crew)
        assert status == "failed"
        errors = [e for (e,) in query(pg_url, "select error from scan_shard")]
        assert errors
        assert all("refused by the agent's policy" in e and "--allow" in e for e in errors)
        assert counts(pg_url)["observation"] == 0
        # An agent that may scan them; the failed shards go out again.
        crew.kill(strict)
        await crew.start("agent", "--zone", queues.zone)
        again = await run("scans", "retry", str(scan_id), "--db", pg_url, broker=queues.broker)
        assert again.returncode == 0, again.stderr.decode()
        assert f"scan {scan_id}: {sent['shards']} shards queued again" in again.stdout.decode()
        status = await wait_for("the retried scan", lambda: finished(pg_url, scan_id), crew)
    assert status == "finished"
    assert counts(pg_url)["observation"] == 2
    nothing = await run("scans", "retry", str(scan_id), "--db", pg_url, broker=queues.broker)
    assert nothing.returncode == 0
    assert "no failed or stuck shard" in nothing.stdout.decode()
