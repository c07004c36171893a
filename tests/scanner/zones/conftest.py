"""Fixtures for the zone tests: the local brokers, unique queues, worker processes, polling.

Every test gets its own zone and ingest queue (``t<hex>``), deleted afterwards, so tests never
see each other's messages. Agents and ingest run as real ``certscan`` processes, each in its
own process group, always killed (the whole group) when the test ends. Every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import trio

from tests.conftest import fresh_pg_database, missing

RABBIT = "amqp://guest:guest@127.0.0.1:5672//"
REDIS = "redis://127.0.0.1:6379/0"
PY = sys.executable


#: How to run certscan: as a user does.
CERTSCAN = [PY, "-m", "scanner"]


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def rabbit() -> str:
    if not _reachable(5672):
        missing("RabbitMQ is not reachable at 127.0.0.1:5672")
    return RABBIT


@pytest.fixture
def redis_broker() -> str:
    if not _reachable(6379):
        missing("Redis is not reachable at 127.0.0.1:6379")
    return REDIS


@dataclass
class Queues:
    """This test's zone and ingest queue, deleted from ``broker`` afterwards."""

    broker: str
    zone: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:12]}")

    @property
    def zone_queue(self) -> str:
        return f"certscan.zone.{self.zone}"

    @property
    def ingest_queue(self) -> str:
        return f"certscan.ingest.{self.zone}"

    def delete(self) -> None:
        if self.broker.startswith("redis"):
            import redis

            client = redis.Redis.from_url(self.broker)
            with client:  # kombu keeps a list per queue and binding sets per exchange
                for key in list(client.scan_iter(match=f"*certscan.*.{self.zone}*")):
                    client.delete(key)
            return
        from kombu import Connection

        with Connection(self.broker, connect_timeout=3) as conn:
            channel = conn.default_channel
            for name in (self.zone_queue, self.ingest_queue):
                with suppress(Exception):
                    channel.queue_delete(name)
                with suppress(Exception):
                    channel.exchange_delete(name)

    def depth(self, name: str) -> int:
        from kombu import Connection

        with Connection(self.broker, connect_timeout=3) as conn:
            _, count, _ = conn.default_channel.queue_declare(name, passive=True)
            return int(count)


@pytest.fixture
def queues(rabbit: str) -> Iterator[Queues]:
    q = Queues(rabbit)
    try:
        yield q
    finally:
        q.delete()


@pytest.fixture
def second_pg_url() -> Iterator[str]:
    """Another fresh PostgreSQL database (for a reference sweep), dropped afterwards."""
    with fresh_pg_database() as url:
        yield url


def env(broker: str) -> dict[str, str]:
    return {**os.environ, "CERTSCAN_BROKER": broker, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}


async def certscan(
    *args: str, broker: str, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(timeout):
        return await trio.run_process(
            [*CERTSCAN, *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env(broker),
        )


@dataclass
class Workers:
    """Worker processes of one test, each in its own process group, logs under ``logs``."""

    broker: str
    logs: Path
    procs: list[trio.Process] = field(default_factory=list)
    expect_dead: set[trio.Process] = field(default_factory=set)

    async def start(self, *args: str) -> trio.Process:
        log = self.logs / f"worker{len(self.procs)}-{args[0]}.log"
        with log.open("wb") as out:
            proc = await trio.lowlevel.open_process(
                [*CERTSCAN, *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env(self.broker),
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def kill(self, proc: trio.Process) -> None:
        self.expect_dead.add(proc)
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def output(self, tail: int | None = None) -> str:
        """Every worker's log (the last ``tail`` characters of each)."""
        logs = (p.read_text(errors="replace") for p in sorted(self.logs.glob("*.log")))
        return "\n".join(log[-tail:] if tail else log for log in logs)


@asynccontextmanager
async def workers(broker: str, logs: Path) -> AsyncIterator[Workers]:
    crew = Workers(broker, logs)
    try:
        yield crew
    finally:
        for proc in crew.procs:
            crew.kill(proc)
        with trio.move_on_after(10):
            for proc in crew.procs:
                await proc.wait()


async def wait_for(
    what: str, check: Callable[[], Any], crew: Workers | None = None, timeout: float = 60
) -> Any:
    """Poll ``check`` (in a thread) until it returns something truthy; fail after ``timeout``."""
    with trio.move_on_after(timeout):
        while True:
            value = await trio.to_thread.run_sync(check)
            if value:
                return value
            dead = [p for p in crew.procs if p.poll() is not None] if crew else []
            if dead and not crew.expect_dead.issuperset(dead):
                pytest.fail(f"a worker exited while waiting for {what}\n{crew.output(3000)}")
            await trio.sleep(0.2)
    logs = crew.output(3000) if crew is not None else ""
    pytest.fail(f"timed out waiting for {what}\n{logs}")


def query(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(sql), params)]
    except sa.exc.ProgrammingError:  # the tables do not exist yet
        return []
    finally:
        engine.dispose()


def scan_status(url: str, scan_id: int) -> str | None:
    rows = query(url, "select status from scan_run where id = :id", id=scan_id)
    return str(rows[0][0]) if rows else None


def snapshot(url: str, scan_id: int) -> dict[str, Any]:
    """What a scan stored, without ids or times: endpoints, certificates, and per endpoint the
    status, version, cipher, protocol, chain and alternative chains."""
    obs = query(
        url,
        "select o.id, e.address, e.port, e.sni, o.status, o.tls_version, o.cipher, o.protocol "
        "from observation o join endpoint e on e.id = o.endpoint_id where o.scan_id = :id",
        id=scan_id,
    )
    chains: dict[int, list[str]] = {}
    for oid, _pos, sha in query(
        url,
        "select c.observation_id, c.position, c.sha256 from observation_certificate c "
        "join observation o on o.id = c.observation_id where o.scan_id = :id "
        "order by c.observation_id, c.position",
        id=scan_id,
    ):
        chains.setdefault(oid, []).append(sha)
    alts: dict[int, list[tuple[int, int, str]]] = {}
    for oid, variant, pos, sha in query(
        url,
        "select a.observation_id, a.variant, a.position, a.sha256 "
        "from observation_alt_certificate a "
        "join observation o on o.id = a.observation_id where o.scan_id = :id "
        "order by a.observation_id, a.variant, a.position",
        id=scan_id,
    ):
        alts.setdefault(oid, []).append((variant, pos, sha))
    endpoints = {}
    for oid, address, port, sni, status, version, cipher, protocol in obs:
        key = (address, port, sni)
        assert key not in endpoints, f"two observations of {key} in scan {scan_id}"
        endpoints[key] = (status, version, cipher, protocol, chains.get(oid, []), alts.get(oid, []))
    certs = {sha for c in chains.values() for sha in c} | {a[2] for v in alts.values() for a in v}
    return {"endpoints": endpoints, "certificates": certs}


def counts(url: str) -> dict[str, int]:
    tables = (
        "scan_run",
        "endpoint",
        "certificate",
        "observation",
        "observation_certificate",
        "observation_alt_certificate",
        "ingested_batch",
        "finding",
    )
    return {t: int(query(url, f"select count(*) from {t}")[0][0]) for t in tables}
