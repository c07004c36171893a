"""Sharded sweeps from the command line, against the built-in lab on loopback: ``--workers``
lands exactly what one process lands, ``--shards`` cover the plan exactly once, an interrupted
``--workers`` sweep resumes to the same result, and bad sharding options are usage errors."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest
import trio

from scanner.inventory.store import Inventory, db_url
from scanner.lab import servers as lab_mod
from scanner.lab.catalogue import Service
from tests.scanner.cli.test_app import PY, certscan, lab_specs, one_line_error

Snapshot = list[tuple[object, ...]]


def snapshot(url: str, scan_id: int) -> Snapshot:
    """What a scan observed, without ids or times: endpoint, outcome and chain fingerprints."""
    inv = Inventory(url)
    try:
        records = inv.latest_endpoints(scan_id=scan_id, include_failures=True)
    finally:
        inv.close()
    return sorted(
        (
            r.address,
            r.port,
            r.sni or "",
            r.status,
            r.tls_version or "",
            r.cipher or "",
            tuple(c.sha256 for c in r.chain),
        )
        for r in records
    )


def latest_scan(url: str) -> int:
    inv = Inventory(url)
    try:
        run = inv.latest_scan()
    finally:
        inv.close()
    assert run is not None
    return run.id


async def wait_for_progress(url: str) -> None:
    """Until the first scan has stored some targets (bounded by the caller's deadline)."""
    path = url.removeprefix("sqlite:///")
    while True:
        await trio.sleep(0.2)
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
                row = conn.execute("SELECT done FROM scan_run ORDER BY id LIMIT 1").fetchone()
        except sqlite3.Error:
            continue
        if row and row[0] > 0:
            return


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return db_url(str(tmp_path / "inventory.db"))
    return str(request.getfixturevalue("pg_url"))


FAST = ("--deadline", "2", "--no-progress", "-q")


async def test_workers_land_what_one_process_lands(lab: lab_mod.Lab, db: str) -> None:
    specs = lab_specs(lab)
    one = await certscan("sweep", *specs, "--db", db, *FAST)
    assert one.returncode == 0, one.stderr
    single = latest_scan(db)
    two = await certscan("sweep", *specs, "--db", db, "--workers", "2", "--json", *FAST)
    assert two.returncode == 0, two.stderr
    sharded = latest_scan(db)
    assert snapshot(db, sharded) == snapshot(db, single)
    assert len(snapshot(db, single)) == len(specs)
    lines = [json.loads(line) for line in two.stdout.decode().splitlines()]
    assert len(lines) == len(specs) - 0  # every lab endpoint accepts a connection
    inv = Inventory(db)
    try:
        shards = inv.shards(sharded)
        run = inv.scan(sharded)
    finally:
        inv.close()
    assert [s.status for s in shards] == ["done", "done"]
    assert sum(s.total for s in shards) == len(specs)
    assert abs(shards[0].total - shards[1].total) <= 1
    assert run is not None
    assert (run.status, run.shards, run.done) == ("finished", 2, len(specs))


async def test_shards_cover_the_plan_exactly_once(lab: lab_mod.Lab, tmp_path: Path) -> None:
    # Every lab endpoint but the one that never answers (it would cost --deadline per sweep),
    # plus 16 closed addresses.
    quick = [f"{e.address}:{e.port}" for e in lab.endpoints if e.service is not Service.HANG]
    specs = [*quick, "127.78.0.0/28"]
    url = db_url(str(tmp_path / "shards.db"))
    plan = await certscan("sweep", *specs, "--dry-run")
    assert plan.returncode == 0, plan.stderr
    counts = []
    for i in range(3):
        dry = await certscan(
            "sweep", *specs, "--dry-run", "--seed", "42", "--shards", "3", "--shard", str(i)
        )
        counts.append(int(dry.stdout.split()[0]))
    assert sum(counts) == int(plan.stdout.split()[0]) > len(specs)
    assert max(counts) - min(counts) <= 1
    observed: Snapshot = []
    for i in range(3):
        run = await certscan(
            "sweep", *specs, "--db", url, "--seed", "42", "--shards", "3", "--shard", str(i), *FAST
        )
        assert run.returncode == 0, run.stderr
        observed += snapshot(url, latest_scan(url))
    whole = await certscan("sweep", *specs, "--db", url, *FAST)
    assert whole.returncode == 0, whole.stderr
    assert sorted(observed) == snapshot(url, latest_scan(url))


async def test_interrupted_workers_resume_to_the_same_inventory(
    lab: lab_mod.Lab, tmp_path: Path
) -> None:
    # 1,024 closed addresses at 150 targets/s: about 7 s, interrupted after about 2.
    specs = [*lab_specs(lab), "127.79.0.0/22"]
    url = db_url(str(tmp_path / "resume.db"))
    args = [*specs, "--db", url, "--workers", "2", "--rate", "150", *FAST]
    with trio.fail_after(60):
        proc = await trio.lowlevel.open_process(
            [PY, "-m", "scanner", "sweep", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        await wait_for_progress(url)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole process group
        code = await proc.wait()
    assert code == 130
    scan = latest_scan(url)
    inv = Inventory(url)
    try:
        halfway = inv.scan(scan)
        shards = inv.shards(scan)
    finally:
        inv.close()
    assert halfway is not None
    assert halfway.status == "interrupted"
    assert 0 < halfway.done < halfway.total
    assert {s.status for s in shards} == {"interrupted"}
    resumed = await certscan(*["sweep", *args, "--resume", "--rate", "100000"], timeout=90)
    assert resumed.returncode == 0, resumed.stderr
    assert b"resuming scan" in resumed.stderr
    assert latest_scan(url) == scan
    single = await certscan("sweep", *specs, "--db", url, *FAST, timeout=90)
    assert single.returncode == 0, single.stderr
    assert snapshot(url, scan) == snapshot(url, latest_scan(url))
    inv = Inventory(url)
    try:
        final = inv.scan(scan)
    finally:
        inv.close()
    assert final is not None
    assert (final.status, final.done) == ("finished", final.total)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--shards", "4", "--shard", "1"], "--shards needs --seed"),
        (["--seed", "1", "--shard", "1"], "--shard needs --shards"),
        (["--seed", "1", "--shards", "4"], "needs --shard"),
        (["--seed", "1", "--shards", "4", "--shard", "4"], "out of range"),
        (["--seed", "-1"], "out of range"),
        (["--workers", "0"], "--workers must be between"),
        (["--workers", "2", "--seed", "1", "--shards", "2", "--shard", "0"], "drop --shards"),
    ],
)
async def test_bad_sharding_is_a_usage_error(extra: list[str], needle: str, tmp_path: Path) -> None:
    result = await certscan("sweep", "127.0.0.1", "--db", str(tmp_path / "x.db"), *extra)
    assert result.returncode == 2, result.stderr
    err = result.stderr.decode()
    one_line_error(err)
    assert needle in err
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize(
    ("extra", "code", "needle"),
    [
        (["--exclude", "127.0.0.1"], 2, "nothing to scan"),
        (["--db", "/proc/certscan-nowhere/x.db"], 3, "cannot open inventory"),
    ],
)
async def test_workers_forked_for_nothing_exit_with_the_error(
    extra: list[str], code: int, needle: str, tmp_path: Path
) -> None:
    """The workers are forked before planning; an error after that still ends the command at
    once (they are told there is no job) and leaves no process behind."""
    args = ["sweep", "127.0.0.1", "-p", "9", "--workers", "2", "--db", str(tmp_path / "x.db")]
    with trio.fail_after(20):
        result = await certscan(*args, *extra)
    assert result.returncode == code, result.stderr
    err = result.stderr.decode()
    one_line_error(err)
    assert needle in err
    leftover = subprocess.run(
        ["pgrep", "-f", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert leftover.stdout == ""
