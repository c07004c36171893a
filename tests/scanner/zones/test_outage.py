"""PostgreSQL going away under a running ingest: a private cluster this test owns (initdb and
pg_ctl in a temporary directory, never the machine's shared server), real RabbitMQ, real agent
and ingest processes. Nothing is lost while the database is down; a message the database never
takes goes to the dead-letter queue instead of being acknowledged and dropped."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from scanner.lab import servers as lab_mod
from tests.conftest import missing
from tests.scanner.zones.conftest import Queues, query, snapshot, wait_for, workers
from tests.scanner.zones.test_zones import TIMES, dispatch, finished, lab_specs, reference_sweep

#: How long the database stays down (a real outage may last minutes; ingest's pauses double
#: up to CERTSCAN_INGEST_BACKOFF_MAX, set short here so the test ends soon after).
OUTAGE_SECONDS = 20


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        missing(f"{name} (the postgresql server package) is not installed")
    return found[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """A PostgreSQL cluster of our own, run as the ``postgres`` user."""

    data: Path
    port: int
    options: str = ""

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def ctl(self, *args: str) -> None:
        command = [_pg_bin("pg_ctl"), "-D", str(self.data), "-w", "-t", "30", *args]
        as_postgres(command)


def as_postgres(command: list[str]) -> None:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    done = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    initdb = _pg_bin("initdb")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        missing("runuser (to run PostgreSQL as the postgres user)")
    top = Path(tempfile.mkdtemp(prefix="certscan-pg-"))
    data = top / "data"
    if os.geteuid() == 0:
        shutil.chown(top, "postgres")
    port = _free_port()
    pg = Cluster(data, port, f"-p {port} -k {top} -c listen_addresses=127.0.0.1 -c fsync=off")
    try:
        as_postgres([initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"])
        pg.ctl("-o", pg.options, "-l", str(top / "log"), "start")
        yield pg
    finally:
        subprocess.run(
            [*(["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []),
             _pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        shutil.rmtree(top, ignore_errors=True)


async def test_ingest_survives_a_database_outage_and_dead_letters_after_its_bound(
    lab: lab_mod.Lab,
    queues: Queues,
    cluster: Cluster,
    second_pg_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CERTSCAN_INGEST_BACKOFF_MAX", "1")
    monkeypatch.setenv("CERTSCAN_SETTLE_SECONDS", "1")
    db = cluster.url
    # About four seconds of batches: the lab plus 600 closed ports at 150 per second.
    args = [*lab_specs(lab), "127.88.1.0/23", "-p", "9", *TIMES, "--rate", "150"]
    async with workers(queues.broker, tmp_path) as crew, trio.open_nursery() as nursery:
        nursery.start_soon(reference_sweep, second_pg_url, *args)
        await crew.start("ingest", "--db", db, "--ingest-queue", queues.ingest_queue)
        await crew.start("agent", "--zone", queues.zone)
        sent = await dispatch(queues, db, *args, "--shard-size", "100000", "--seed", "3")

        def started() -> bool:
            rows = query(db, "select done from scan_shard")
            return bool(rows) and rows[0][0] > 0

        await wait_for("the first batch", started, crew)
        await trio.to_thread.run_sync(cluster.ctl, "-m", "fast", "stop")
        await trio.sleep(OUTAGE_SECONDS)  # the agent finishes meanwhile; ingest keeps retrying
        assert "retrying in" in crew.output()
        await trio.to_thread.run_sync(
            cluster.ctl, "-o", cluster.options, "-l", str(cluster.data.parent / "log"), "start"
        )
        status = await wait_for(
            "the scan to finish", lambda: finished(db, sent["scan_id"]), crew, timeout=120
        )
    assert status == "finished"
    ((done, total),) = query(db, "select done, total from scan_shard")
    assert done == total == sent["targets"]
    assert snapshot(db, sent["scan_id"]) == snapshot(second_pg_url, 1)  # nothing lost

    # The database gone for good, and a bound of two retries: a message is dead-lettered.
    monkeypatch.setenv("CERTSCAN_INGEST_RETRIES", "2")
    (tmp_path / "second").mkdir()
    async with workers(queues.broker, tmp_path / "second") as crew:
        await crew.start("ingest", "--db", db, "--ingest-queue", queues.ingest_queue)
        await dispatch(queues, db, *lab_specs(lab)[:2], *TIMES, "--seed", "5")
        await trio.to_thread.run_sync(cluster.ctl, "-m", "fast", "stop")
        await crew.start("agent", "--zone", queues.zone)
        dead = f"{queues.ingest_queue}.dead"

        def dead_lettered() -> bool:
            try:
                return queues.depth(dead) > 0
            except Exception:  # not declared yet
                return False

        await wait_for("a dead letter", dead_lettered, crew, timeout=90)
        assert "gave up, moved to" in crew.output()
    from kombu import Connection

    with Connection(queues.broker, connect_timeout=3) as conn:
        conn.default_channel.queue_delete(dead)
