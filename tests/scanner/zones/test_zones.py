"""Distributed sweeps end to end: real RabbitMQ/Redis, real PostgreSQL, the loopback lab, and
``certscan dispatch``/``agent``/``ingest`` as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

from scanner.lab import servers as lab_mod
from tests.scanner.zones.conftest import (
    CERTSCAN,
    Queues,
    counts,
    env,
    query,
    scan_status,
    snapshot,
    wait_for,
    workers,
)
from tests.scanner.zones.conftest import certscan as run

TIMES = ("--handshake-timeout", "1", "--deadline", "1", "--connect-timeout", "1")


def lab_specs(lab: lab_mod.Lab) -> list[str]:
    return [f"{e.address}:{e.port}" for e in lab.endpoints]


async def dispatch(q: Queues, db: str, *args: str) -> dict[str, int]:
    proc = await run(
        "dispatch",
        *args,
        "--zone",
        q.zone,
        "--ingest-queue",
        q.ingest_queue,
        "--db",
        db,
        "--json",
        broker=q.broker,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    result: dict[str, int] = json.loads(proc.stdout)
    return result


def finished(db: str, scan_id: int) -> str | None:
    status = scan_status(db, scan_id)
    return status if status in ("finished", "failed") else None


async def reference_sweep(db: str, *args: str) -> None:
    proc = await run("sweep", *args, "--db", db, "--no-progress", "--quiet", broker="")
    assert proc.returncode in (0, 1), proc.stderr.decode()


async def test_four_shards_on_two_agents_match_one_sweep(
    lab: lab_mod.Lab, queues: Queues, pg_url: str, second_pg_url: str, tmp_path: Path
) -> None:
    args = [*lab_specs(lab), "--all-certs", "--sni-from", "san", *TIMES]
    async with workers(queues.broker, tmp_path) as crew, trio.open_nursery() as nursery:
        nursery.start_soon(reference_sweep, second_pg_url, *args)
        await crew.start("ingest", "--db", pg_url, "--ingest-queue", queues.ingest_queue)
        for _ in range(2):
            await crew.start("agent", "--zone", queues.zone)
        sent = await dispatch(queues, pg_url, *args, "--shard-size", "4", "--seed", "7")
        assert sent["shards"] == 4
        assert sent["targets"] == len(lab.endpoints)
        status = await wait_for(
            "the scan to finish", lambda: finished(pg_url, sent["scan_id"]), crew
        )
    assert status == "finished"
    ours, theirs = snapshot(pg_url, sent["scan_id"]), snapshot(second_pg_url, 1)
    assert ours == theirs
    assert {key[:2] for key in ours["endpoints"]} == {(e.address, e.port) for e in lab.endpoints}
    assert any(alt for *_, alt in ours["endpoints"].values())  # --all-certs reached the wire
    assert any(sni for _, _, sni in ours["endpoints"])  # so did discovered endpoints (index -1)
    shards = query(
        pg_url,
        "select shard, status, zone, total, done from scan_shard where scan_id = :id",
        id=sent["scan_id"],
    )
    assert sorted(s[0] for s in shards) == [0, 1, 2, 3]
    assert {s[1] for s in shards} == {"done"}
    assert {s[2] for s in shards} == {queues.zone}
    assert sum(s[3] for s in shards) == sum(s[4] for s in shards) == len(lab.endpoints)
    # The findings were recorded when the last shard settled, as after a sweep.
    assert counts(pg_url)["finding"] == counts(second_pg_url)["finding"] > 0


async def test_killed_agent_loses_nothing(
    lab: lab_mod.Lab, queues: Queues, pg_url: str, second_pg_url: str, tmp_path: Path
) -> None:
    # One shard: the lab plus 600 closed loopback ports paced at 150 per second -- about four
    # seconds of real work, reported in batches every half second.
    args = [*lab_specs(lab), "127.88.1.0/23", "-p", "9", *TIMES, "--rate", "150"]
    async with workers(queues.broker, tmp_path) as crew, trio.open_nursery() as nursery:
        nursery.start_soon(reference_sweep, second_pg_url, *args)
        await crew.start("ingest", "--db", pg_url, "--ingest-queue", queues.ingest_queue)
        agents = [await crew.start("agent", "--zone", queues.zone) for _ in range(2)]
        sent = await dispatch(queues, pg_url, *args, "--shard-size", "100000", "--seed", "3")
        assert sent["shards"] == 1

        def midway() -> tuple[int, str] | None:
            rows = query(pg_url, "select done, total, agent from scan_shard")
            if rows and 0 < rows[0][0] < rows[0][1] // 2:
                return rows[0][0], rows[0][2]
            return None

        done_at_kill, agent = await wait_for("the shard to be part-way", midway, crew)
        # The agent is "host/pid" of a worker process; its group is the agent command's.
        group = os.getpgid(int(agent.rsplit("/", 1)[1]))
        (victim,) = [a for a in agents if a.pid == group]
        crew.kill(victim)
        with trio.fail_after(10):
            await victim.wait()
        status = await wait_for(
            "the scan to finish", lambda: finished(pg_url, sent["scan_id"]), crew
        )
    assert status == "finished"
    assert done_at_kill > 0
    ((attempts, done, total, last),) = query(
        pg_url, "select attempts, done, total, agent from scan_shard"
    )
    assert attempts == 2
    assert last != agent  # the other agent took the redelivered task over
    assert done == total == sent["targets"]
    assert snapshot(pg_url, sent["scan_id"]) == snapshot(second_pg_url, 1)


def republish(broker: str, queue: str, body: object, headers: dict[str, Any], kind: str) -> None:
    """Put a message on ``queue`` as it is (raw body, content type, Celery headers)."""
    from kombu import Connection

    with Connection(broker) as conn:
        conn.Producer().publish(
            body, routing_key=queue, headers=headers, content_type=kind, content_encoding="utf-8"
        )


def take_all(broker: str, queue: str) -> list[tuple[Any, dict[str, Any], str]]:
    """Every message on ``queue`` (consumed)."""
    from kombu import Connection

    taken = []
    with Connection(broker) as conn:
        simple = conn.SimpleQueue(queue)
        while True:
            try:
                m = simple.get(timeout=1)
            except simple.Empty:
                return taken
            taken.append((m.body, m.headers, m.content_type))
            m.ack()


async def test_duplicate_shard_task_changes_nothing(
    lab: lab_mod.Lab, queues: Queues, pg_url: str, tmp_path: Path
) -> None:
    args = [*lab_specs(lab), *TIMES]
    async with workers(queues.broker, tmp_path) as crew:
        # No consumer yet: take the shard task as published, put it back, let it run.
        sent = await dispatch(queues, pg_url, *args, "--shard-size", "100000", "--seed", "5")
        ((body, headers, kind),) = take_all(queues.broker, queues.zone_queue)
        republish(queues.broker, queues.zone_queue, body, headers, kind)
        await crew.start("ingest", "--db", pg_url, "--ingest-queue", queues.ingest_queue)
        await crew.start("agent", "--zone", queues.zone)
        await wait_for("the scan to finish", lambda: finished(pg_url, sent["scan_id"]), crew)
        before = counts(pg_url)
        # The same task again: a new attempt sweeps the shard; ingest stores nothing new.
        again = {**headers, "id": headers["id"] + "-again"}
        republish(queues.broker, queues.zone_queue, body, again, kind)
        # The scan is closed: every message of the new attempt is refused, on one line.
        closed = f"message: scan {sent['scan_id']} is finished, not running"
        await wait_for(
            "the duplicate attempt", lambda: f"shard_finished {closed}" in crew.output(), crew
        )
        after = counts(pg_url)
    assert after == before
    assert scan_status(pg_url, sent["scan_id"]) == "finished"


async def test_duplicate_and_malformed_messages_change_nothing(
    lab: lab_mod.Lab, queues: Queues, pg_url: str, tmp_path: Path
) -> None:
    args = [*lab_specs(lab), *TIMES]
    async with workers(queues.broker, tmp_path) as crew:
        await crew.start("agent", "--zone", queues.zone)
        sent = await dispatch(queues, pg_url, *args, "--shard-size", "100000", "--seed", "5")
        # No ingest yet: let the agent finish, take its messages, put them back twice.
        await wait_for("the agent to finish", lambda: " batches, " in crew.output(), crew)
        messages = take_all(queues.broker, queues.ingest_queue)
        # Malformed first: a body Celery cannot unpack, a batch that is no batch, pickle.
        bad = {"task": "certscan.batch", "lang": "py"}
        for n, (body, kind) in enumerate(
            [
                ('"garbage"', "application/json"),
                ('[[{"v": 1, "type": "batch"}], {}, {}]', "application/json"),
                (b"\x80\x04K\x01.", "application/x-python-serialize"),
            ]
        ):
            republish(queues.broker, queues.ingest_queue, body, {**bad, "id": f"bad{n}"}, kind)
        for body, headers, kind in messages:  # each twice in a row
            for copy in range(2):
                again = {**headers, "id": f"{headers['id']}-{copy}"}
                republish(queues.broker, queues.ingest_queue, body, again, kind)
        await crew.start("ingest", "--db", pg_url, "--ingest-queue", queues.ingest_queue)
        await wait_for("the scan to finish", lambda: finished(pg_url, sent["scan_id"]), crew)
        await wait_for(
            "every copy to be consumed", lambda: queues.depth(queues.ingest_queue) == 0, crew
        )
        await wait_for(
            "the last copy",
            lambda: ": stale (attempt" in crew.output() or "not running" in crew.output(),
            crew,
        )
    batches = sum(1 for _, h, _ in messages if h["task"] == "certscan.batch")
    assert batches >= 1
    c = counts(pg_url)
    assert c["ingested_batch"] == batches
    assert c["observation"] == len(lab.endpoints)
    log = crew.output()
    assert "stored before" in log
    assert "not a certscan message" in log
    assert "rejected batch message: certs: expected an object" in log
    assert "disallowed" in log.lower()


async def test_redis_broker_and_the_time_limit(
    lab: lab_mod.Lab, redis_broker: str, pg_url: str, tmp_path: Path
) -> None:
    q = Queues(redis_broker)
    try:
        async with workers(redis_broker, tmp_path) as crew:
            await crew.start("ingest", "--db", pg_url, "--ingest-queue", q.ingest_queue)
            # A 4 s hard limit: the sweep stops itself after about 3.5 s.
            await crew.start("agent", "--zone", q.zone, "--time-limit", "4")
            sent = await dispatch(q, pg_url, *lab_specs(lab)[:4], *TIMES, "--shard-size", "2")
            assert sent["shards"] == 2
            # 600 closed ports at 100 per second: six seconds of work, more than allowed.
            slow = await dispatch(
                q, pg_url, "127.88.1.0/23", "-p", "9", "--rate", "100", "--shard-size", "512"
            )
            status = await wait_for(
                "the scan to finish", lambda: finished(pg_url, sent["scan_id"]), crew
            )
            slow_status = await wait_for(
                "the slow scan to end", lambda: finished(pg_url, slow["scan_id"]), crew
            )
        assert status == "finished"
        assert len(snapshot(pg_url, sent["scan_id"])["endpoints"]) == 4
        assert slow_status == "failed"
        ((shard_status, done, total, error),) = query(
            pg_url,
            "select status, done, total, error from scan_shard where scan_id = :id",
            id=slow["scan_id"],
        )
        assert shard_status == "failed"
        assert 0 < done < total
        assert error.startswith("time limit:")
    finally:
        q.delete()


async def test_bad_zone_is_usage_error(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    results = {}

    async def one(command: list[str], zone: str) -> None:
        proc = await run(*command, "--zone", zone, broker="amqp://127.0.0.1:1//")
        results[(command[0], zone)] = proc

    async with trio.open_nursery() as nursery:
        # Every bad spelling is in test_messages; here, each command's exit code and line.
        nursery.start_soon(one, ["dispatch", "127.0.0.1", "-p", "443", "--db", str(db)], "DMZ")
        nursery.start_soon(one, ["agent"], "dmz.1")
    for proc in results.values():
        lines = proc.stderr.decode().strip().splitlines()
        assert proc.returncode == 2, proc.stderr
        assert len(lines) == 1, lines
        assert "zone" in lines[0]
    assert not db.exists()


async def test_broker_down_is_operational_error(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    commands = [
        ["dispatch", "127.0.0.1", "-p", "443", "--zone", "dmz", "--db", str(db)],
        ["agent", "--zone", "dmz"],
        ["ingest", "--db", str(tmp_path / "ingest.db")],
    ]
    results = []

    async def one(argv: list[str]) -> None:
        proc = await run(*argv, "--broker", "amqp://guest:secret@127.0.0.1:1//", broker="")
        results.append(proc)

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            for argv in commands:
                nursery.start_soon(one, argv)
    for proc in results:
        err = proc.stderr.decode()
        assert proc.returncode == 3, err
        assert len(err.strip().splitlines()) == 1, err
        assert "127.0.0.1:1" in err
        assert "secret" not in err
    assert not db.exists()


def test_sweep_does_not_import_celery() -> None:
    code = (
        "import sys; from scanner.cli import app, zones; "
        "sys.exit('celery' in sys.modules or 'kombu' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False, env=env("")).returncode == 0
    assert CERTSCAN  # the command line the tests run
