"""``certscan serve`` as a real process: it sweeps the built-in lab on its schedule, a real
Prometheus server scrapes it, SIGTERM during a scan stops it cleanly, and ``--once`` runs the
jobs and exits. Everything listens on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio
from cryptography.hazmat.primitives import hashes
from prometheus_client.parser import text_string_to_metric_families

from scanner.inventory.store import Inventory, db_url
from scanner.lab import servers as lab_mod
from tests.conftest import missing, require_tool

TOKEN = "token-for-the-serve-test-0123"
Record = dict[str, Any]


def write_config(tmp_path: Path, lab: lab_mod.Lab, *, deadline: float = 2.0) -> Path:
    (tmp_path / "lab-ca.pem").write_bytes(lab.ca.cert_pem)
    targets = ", ".join(f'"{e.address}:{e.port}"' for e in lab.endpoints)
    config = tmp_path / "certscan.toml"
    config.write_text(
        f"""
[trust]
ca_bundles = ["lab-ca.pem"]

[serve]
token = "{TOKEN}"

[jobs.lab]
targets = [{targets}]
every = "1h"
connect_timeout = 1
handshake_timeout = 1
deadline = {deadline}
""",
        encoding="utf-8",
    )
    return config


class LogWatch:
    """The daemon's JSON log lines, read from its stderr as they come."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.raw: list[str] = []
        self._changed = trio.Event()

    async def read(self, stream: trio.abc.ReceiveStream) -> None:
        buffer = b""
        async for chunk in stream:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                text = line.decode()
                self.raw.append(text)
                self.records.append(json.loads(text))  # every line must be one JSON object
            self._changed.set()
            self._changed = trio.Event()

    async def wait_for(self, match: Callable[[Record], bool], seconds: float = 10) -> Record:
        with trio.fail_after(seconds):
            while True:
                for record in self.records:
                    if match(record):
                        return record
                await self._changed.wait()


def event(name: str, **fields: Any) -> Callable[[Record], bool]:
    return lambda r: r.get("event") == name and all(r.get(k) == v for k, v in fields.items())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def daemon(
    config: Path, db: Path | str, *extra: str
) -> AsyncIterator[tuple[trio.Process, LogWatch]]:
    argv = [sys.executable, "-m", "scanner", "serve", "--config", str(config), "--db", str(db)]
    argv += ["--listen", "127.0.0.1:0", "--log-format", "json", *extra]
    env = {k: v for k, v in os.environ.items() if k not in ("CERTSCAN_DB", "CERTSCAN_API_TOKEN")}
    watch = LogWatch()
    async with trio.open_nursery() as nursery:
        process = await trio.lowlevel.open_process(argv, stderr=subprocess.PIPE, env=env)
        try:
            assert process.stderr is not None
            nursery.start_soon(watch.read, process.stderr)
            yield process, watch
        finally:
            if process.returncode is None:
                process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()


async def wait_until(check: Callable[[], Any], seconds: float, what: str) -> Any:
    """Poll ``check`` (an external process we cannot be notified by) until it is truthy."""
    with trio.move_on_after(seconds):
        while True:
            value = await check()
            if value:
                return value
            await trio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_serve_scraped_by_prometheus_then_sigterm_during_a_scan(
    lab: lab_mod.Lab, tmp_path: Path
) -> None:
    prometheus = require_tool("prometheus")
    db = tmp_path / "inventory.db"
    config = write_config(tmp_path, lab, deadline=3.0)
    good = next(e for e in lab.endpoints if e.expect == "ok" and e.leaf is not None)
    assert good.leaf is not None
    expiry = good.leaf.cert.not_valid_after_utc.timestamp()

    async with daemon(config, db) as (process, log):
        listening = await log.wait_for(event("listening"))
        base = listening["urls"][0]
        first = await log.wait_for(event("scan stored", job="lab"), seconds=15)
        assert first["interrupted"] is False
        assert first["chains"] >= 1

        # a real Prometheus scrapes the daemon; PromQL returns the lab leaf's expiry
        prom_port = free_port()
        (tmp_path / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: certscan\n"
            "    honor_labels: true\n"
            f"    static_configs: [{{targets: ['{base.removeprefix('http://')}']}}]\n",
            encoding="utf-8",
        )
        prom_argv = [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=warn",
        ]
        prom = await trio.lowlevel.open_process(
            prom_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{prom_port}") as api:
                query = (
                    "certscan_certificate_not_after_timestamp_seconds"
                    f'{{address="{good.address}",port="{good.port}",position="leaf"}}'
                )

                async def result() -> list[Any]:
                    try:
                        got = await api.get("/api/v1/query", params={"query": query})
                    except httpx.TransportError:
                        return []
                    return list(got.json()["data"]["result"]) if got.status_code == 200 else []

                found = await wait_until(result, 15, "Prometheus to scrape the daemon")
                # the scan metrics carry the job that ran the sweep
                query = 'certscan_scan_duration_seconds{job="lab"}'
                durations = await wait_until(result, 15, "the lab job's scan duration")
        finally:
            prom.terminate()
            with trio.CancelScope(shield=True):
                await prom.wait()
        assert len(found) == 1
        assert float(found[0]["value"][1]) == expiry
        assert len(durations) == 1
        assert 0 < float(durations[0]["value"][1]) < 60
        assert found[0]["metric"]["sha256"] == good.leaf.cert.fingerprint(hashes.SHA256()).hex()

        # scan now (token), then SIGTERM while that scan runs
        async with httpx.AsyncClient(base_url=base) as http:
            started = await http.post(
                "/api/v1/jobs/lab/run", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert started.status_code == 202

            async def running() -> Any:
                scans = (await http.get("/api/v1/scans")).json()["scans"]
                newest = scans[0]
                return len(scans) == 2 and newest["status"] == "running" and newest["done"] > 0

            await wait_until(running, 10, "the second scan to store its first targets")
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(5):
            code = await process.wait()
        assert code == 0
        await log.wait_for(event("stopped"))

    inventory = Inventory(db_url(str(db)))
    try:
        scans = inventory.scans()
        assert [s.status for s in scans] == ["interrupted", "finished"]
        assert inventory.latest_endpoints(scan_id=scans[0].id, include_failures=True)
    finally:
        inventory.close()


async def test_once_runs_every_job_and_exits(lab: lab_mod.Lab, tmp_path: Path) -> None:
    db = tmp_path / "inventory.db"
    config = write_config(tmp_path, lab, deadline=1.0)
    async with daemon(config, db, "--once") as (process, log):
        with trio.fail_after(15):
            code = await process.wait()
        stored = await log.wait_for(event("scan stored", job="lab"))
    assert code == 0
    assert stored["interrupted"] is False
    assert not any(r.get("event") == "listening" for r in log.records)  # no HTTP server
    inventory = Inventory(db_url(str(db)))
    try:
        assert [s.status for s in inventory.scans()] == ["finished"]
    finally:
        inventory.close()


async def test_bad_config_is_a_one_line_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[jobs.x]\ntargets = ["127.0.0.1"]\nevery = "soon"\n', encoding="utf-8")
    argv = [sys.executable, "-m", "scanner", "serve", "--config", str(config), "--once"]
    done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 2
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1
    assert "jobs.x.every" in lines[0]


async def test_sighup_reloads_jobs_and_keeps_schedules(lab: lab_mod.Lab, tmp_path: Path) -> None:
    db = tmp_path / "inventory.db"
    config = write_config(tmp_path, lab, deadline=1.0)
    async with daemon(config, db) as (process, log):
        base = (await log.wait_for(event("listening")))["urls"][0]
        await log.wait_for(event("scan stored", job="lab"), seconds=15)
        async with httpx.AsyncClient(base_url=base) as http:
            before = {j["name"]: j for j in (await http.get("/api/v1/jobs")).json()["jobs"]}
            text = config.read_text(encoding="utf-8")
            config.write_text(
                text + '\n[jobs.second]\ntargets = ["127.0.0.1"]\ncron = "0 0 1 1 *"\n',
                encoding="utf-8",
            )
            process.send_signal(signal.SIGHUP)
            await log.wait_for(event("config reloaded"))
            after = {j["name"]: j for j in (await http.get("/api/v1/jobs")).json()["jobs"]}
            assert sorted(after) == ["lab", "second"]
            assert after["lab"]["next_run"] == before["lab"]["next_run"]  # schedule kept
            assert after["lab"]["runs"] == 1

            config.write_text(text + "\n[jobs.broken]\nevery = 3\n", encoding="utf-8")
            process.send_signal(signal.SIGHUP)
            failed = await log.wait_for(event("reload failed; keeping the old config"))
            assert "jobs.broken" in failed["error"]
            kept = (await http.get("/api/v1/jobs")).json()["jobs"]
            assert sorted(j["name"] for j in kept) == ["lab", "second"]
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(5):
            assert await process.wait() == 0


async def test_once_sigterm_during_a_scan_exits_130_and_keeps_data(
    lab: lab_mod.Lab, tmp_path: Path
) -> None:
    db = tmp_path / "inventory.db"
    config = write_config(tmp_path, lab, deadline=3.0)
    async with daemon(config, db, "--once") as (process, log):
        await log.wait_for(event("job started", job="lab"))

        def progress() -> bool:
            if not db.exists():
                return False
            inventory = Inventory(db_url(str(db)))
            try:
                scan = inventory.latest_scan()
                return scan is not None and scan.status == "running" and scan.done > 0
            finally:
                inventory.close()

        async def stored() -> bool:
            return await trio.to_thread.run_sync(progress)

        await wait_until(stored, 10, "the scan to store its first targets")
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(5):
            code = await process.wait()
    assert code == 130
    inventory = Inventory(db_url(str(db)))
    try:
        scans = inventory.scans()
        assert [s.status for s in scans] == ["interrupted"]
        assert inventory.latest_endpoints(scan_id=scans[0].id, include_failures=True)
    finally:
        inventory.close()


async def test_busy_port_is_a_one_line_operational_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        argv = [sys.executable, "-m", "scanner", "serve", "--db", str(tmp_path / "i.db")]
        argv += ["--listen", f"127.0.0.1:{port}"]
        done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 3
    assert done.stderr.decode().strip().endswith("Address already in use")
    assert len(done.stderr.decode().strip().splitlines()) == 1


# --- jobs dispatched to zone agents -------------------------------------------------------------


def write_zone_config(
    tmp_path: Path, specs: list[str], *, zone: str, broker: str, ingest_queue: str
) -> Path:
    config = tmp_path / "zones.toml"
    targets = ", ".join(f'"{spec}"' for spec in specs)
    config.write_text(
        f"""
[serve]
token = "{TOKEN}"

[jobs.dmz]
targets = [{targets}]
every = "1h"
zone = "{zone}"
shard_size = "4"
broker = "{broker}"
ingest_queue = "{ingest_queue}"
connect_timeout = 1
handshake_timeout = 1
deadline = 1
""",
        encoding="utf-8",
    )
    return config


async def test_zone_job_with_no_broker_fails_the_run_and_leaves_no_scan(tmp_path: Path) -> None:
    # nothing listens on 127.0.0.1:1: the broker check fails before anything is recorded
    db = tmp_path / "inventory.db"
    broker = "amqp://guest:secret-pw@127.0.0.1:1//"
    config = write_zone_config(
        tmp_path, ["127.0.0.1:443"], zone="dmz", broker=broker, ingest_queue="certscan.ingest"
    )
    async with daemon(config, db, "--once") as (process, log):
        with trio.fail_after(30):
            code = await process.wait()
        failed = await log.wait_for(event("job failed", job="dmz"))
    assert code == 3
    assert "cannot reach the broker" in failed["error"]
    assert "secret-pw" not in "\n".join(log.raw)
    inventory = Inventory(db_url(str(db)))
    try:
        assert inventory.scans() == []
    finally:
        inventory.close()


async def test_serve_dispatches_a_zone_job_to_agents_and_reports_its_shards(
    lab: lab_mod.Lab, pg_url: str, tmp_path: Path
) -> None:
    """serve -> RabbitMQ -> a zone agent -> ingest -> the inventory, read back through the
    daemon's API and /metrics."""
    # the zone tests' helpers: unique queues, worker processes killed by group at the end
    from tests.scanner.zones.conftest import RABBIT, Queues, scan_status, workers

    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError:
        missing("RabbitMQ is not reachable at 127.0.0.1:5672")
    queues = Queues(RABBIT)
    specs = [f"{e.address}:{e.port}" for e in lab.endpoints]
    config = write_zone_config(
        tmp_path, specs, zone=queues.zone, broker=RABBIT, ingest_queue=queues.ingest_queue
    )
    try:
        async with workers(RABBIT, tmp_path) as crew, daemon(config, pg_url) as (_, log):
            await crew.start("ingest", "--db", pg_url, "--ingest-queue", queues.ingest_queue)
            await crew.start("agent", "--zone", queues.zone)
            base = (await log.wait_for(event("listening")))["urls"][0]
            # an interval job runs at once: the daemon queues the shards and does not wait
            sent = await log.wait_for(event("scan dispatched", job="dmz"), seconds=30)
            assert sent["zone"] == queues.zone
            assert sent["targets"] == len(lab.endpoints)
            assert "guest:guest" not in sent["broker"]
            scan_id, shards = sent["scan_id"], sent["shards"]
            assert shards >= 2
            async with httpx.AsyncClient(base_url=base) as http:

                async def settled() -> Any:
                    status = await trio.to_thread.run_sync(scan_status, pg_url, scan_id)
                    return status in ("finished", "failed")

                await wait_until(settled, 60, "the agents and ingest to finish the scan")
                scan = (await http.get(f"/api/v1/scans/{scan_id}")).json()
                listed = (await http.get(f"/api/v1/scans/{scan_id}/shards")).json()
                metrics = (await http.get("/metrics")).text
                jobs = (await http.get("/api/v1/jobs")).json()["jobs"]
        assert scan["status"] == "finished", crew.output(3000)
        assert (scan["shards"], scan["shard_states"]["done"]) == (shards, shards)
        assert scan["done"] == scan["total"] == len(lab.endpoints)
        assert [s["status"] for s in listed["shards"]] == ["done"] * shards
        assert {s["zone"] for s in listed["shards"]} == {queues.zone}
        families = {f.name: f for f in text_string_to_metric_families(metrics)}
        shard_series = {
            s.labels["state"]: s.value
            for s in families["certscan_scan_shards"].samples
            if s.labels["job"] == "dmz"
        }
        assert shard_series == {
            "queued": 0,
            "running": 0,
            "done": shards,
            "failed": 0,
            "interrupted": 0,
        }
        progress = families["certscan_scan_progress_ratio"].samples
        assert [(s.labels["job"], s.value) for s in progress] == [("dmz", 1.0)]
        runs = {s.labels["job"]: s.value for s in families["certscan_job_runs"].samples}
        assert runs == {"dmz": 1.0}  # the job metrics count the dispatch
        assert jobs[0]["last_ok"] is True
    finally:
        queues.delete()
