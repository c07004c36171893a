"""``[jobs.NAME]`` with ``workers > 1`` in a real ``certscan serve`` on loopback: each run is a
child process (``python -m exporters.serve.child``) that forks the sweep workers, stores one
sharded scan and is reported like any job (log, ``/api/v1/jobs``); a run past ``run_timeout``
is stopped, its scan marked interrupted, and the job's failure names the key."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
import trio

from exporters.serve.child import child_argv, read_summary
from scanner.errors import UsageError
from scanner.inventory.store import Inventory, db_url
from scanner.lab import servers as lab_mod
from tests.exporters.serve.test_daemon import TOKEN, daemon, event, wait_until
from tests.exporters.serve.test_job_options import JOB, settings


def write_config(tmp_path: Path, lab: lab_mod.Lab) -> Path:
    (tmp_path / "lab-ca.pem").write_bytes(lab.ca.cert_pem)
    quick = [e for e in lab.endpoints if e.name != "hang"]
    hang = lab.by_name("hang")
    targets = ", ".join(f'"{e.address}:{e.port}"' for e in quick)
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
workers = 2
connect_timeout = 1
handshake_timeout = 1
deadline = 2

[jobs.slow]
targets = ["{hang.address}:{hang.port}"]
cron = "0 0 1 1 *"
workers = 2
run_timeout = 2
connect_timeout = 30
handshake_timeout = 30
deadline = 50
""",
        encoding="utf-8",
    )
    return config


async def test_a_job_with_workers_runs_in_a_child_process(lab: lab_mod.Lab, tmp_path: Path) -> None:
    db = tmp_path / "inventory.db"
    config = write_config(tmp_path, lab)
    quick = [e for e in lab.endpoints if e.name != "hang"]
    async with daemon(config, db) as (process, log):
        base = (await log.wait_for(event("listening")))["urls"][0]
        stored = await log.wait_for(event("scan stored", job="lab"), seconds=60)
        assert stored["interrupted"] is False
        assert stored["targets"] == len(quick)
        async with httpx.AsyncClient(base_url=base) as http:

            async def finished() -> bool:
                jobs = {j["name"]: j for j in (await http.get("/api/v1/jobs")).json()["jobs"]}
                return bool(jobs["lab"]["last_ok"])

            await wait_until(finished, 10, "the lab job to finish")
            started = await http.post(
                "/api/v1/jobs/slow/run", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert started.status_code == 202
            failed = await log.wait_for(event("job failed", job="slow"), seconds=30)
            assert "run_timeout (2 s)" in failed["error"]
            jobs = {j["name"]: j for j in (await http.get("/api/v1/jobs")).json()["jobs"]}
            assert (jobs["slow"]["last_ok"], jobs["slow"]["failures"]) == (False, 1)
            assert "run_timeout" in jobs["slow"]["last_error"]
            assert (jobs["lab"]["last_ok"], jobs["lab"]["runs"]) == (True, 1)
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await process.wait() == 0
    inventory = Inventory(db_url(str(db)))
    try:
        scans = {s.id: s for s in inventory.scans()}
        lab_scan = scans[stored["scan_id"]]
        assert lab_scan.status == "finished"
        assert lab_scan.shards == 2  # one sharded scan, two worker processes
        endpoints = inventory.latest_endpoints(scan_id=lab_scan.id, include_failures=True)
        assert {(e.address, e.port) for e in endpoints} == {(e.address, e.port) for e in quick}
        others = [s for s in scans.values() if s.id != lab_scan.id]
        assert [s.status for s in others] == ["interrupted"]  # the slow run, stopped
    finally:
        inventory.close()


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ("workers = 300", "jobs.x.workers", "between 1 and 256"),
        ('workers = 2\nzone = "dmz"', "jobs.x.workers", "zone"),
        ("run_timeout = 0", "jobs.x.run_timeout", "1 second to 7 days"),
        ('run_timeout = "1h"', "jobs.x.run_timeout", "int or float"),
    ],
)
def test_bad_worker_keys_name_the_key(tmp_path: Path, extra: str, key: str, words: str) -> None:
    with pytest.raises(UsageError) as caught:
        settings(tmp_path, JOB + extra + "\n")
    message = str(caught.value)
    assert f"c.toml: {key}: " in message
    assert words in message


def test_workers_and_run_timeout_are_read(tmp_path: Path) -> None:
    job = settings(tmp_path, JOB + "workers = 4\nrun_timeout = 600\n").jobs["x"]
    assert (job.sweep.workers, job.sweep.run_timeout) == (4, 600.0)


def test_the_child_protocol() -> None:
    argv = child_argv(job="lab", db="sqlite:///x.db", config=None, log_format="json")
    assert argv[1:] == ["-m", "exporters.serve.child", "--job", "lab", "--db", "sqlite:///x.db",
                        "--log-format", "json"]  # fmt: skip
    assert read_summary(b'noise\n{"scan_id": 3}\n') == {"scan_id": 3}
    assert read_summary(b"") == {}
    assert read_summary(b"[1]\n") == {}
    assert read_summary(b"not json\n") == {}
