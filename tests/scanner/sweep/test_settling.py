"""A sweep always ends in a status that tells the truth: findings recorded before ``finished``,
``failed`` when the store refuses a write, and ``--resume`` only against the same plan (a real
resolver answering differently: ``/etc/hosts`` swapped in a private mount namespace)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import trio

from scanner.inventory.store import Inventory, db_url
from scanner.lab import servers as lab_mod
from tests.conftest import missing, require_tool
from tests.scanner.cli.test_app import PY, certscan, lab_specs, one_line_error

QUICK = ("--no-progress", "--quiet", "--connect-timeout", "1", "--handshake-timeout", "1")


def statuses(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [s for (s,) in conn.execute("select status from scan_run order by id")]


def refuse(db: Path, table: str) -> None:
    """Make every insert into ``table`` fail as a full disk would (a real SQLite error)."""
    Inventory(db_url(str(db))).close()
    with sqlite3.connect(db) as conn:
        conn.execute(
            f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )


async def test_a_store_error_on_findings_leaves_the_scan_failed_and_resumable(
    lab: lab_mod.Lab, tmp_path: Path
) -> None:
    db = tmp_path / "inv.db"
    refuse(db, "finding")
    proc = await certscan("sweep", *lab_specs(lab)[:4], *QUICK, "--db", str(db))
    assert proc.returncode == 3, proc.stderr.decode()
    one_line_error(proc.stderr.decode())
    assert statuses(db) == ["failed"]  # not "finished" with stale findings
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER refuse_finding")
    again = await certscan("sweep", *lab_specs(lab)[:4], *QUICK, "--db", str(db), "--resume")
    assert again.returncode in (0, 1), again.stderr.decode()
    assert statuses(db) == ["finished"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from finding").fetchone()[0] > 0


async def test_a_writer_failure_mid_sweep_leaves_the_scan_failed(
    lab: lab_mod.Lab, tmp_path: Path
) -> None:
    db = tmp_path / "inv.db"
    refuse(db, "observation")
    proc = await certscan("sweep", *lab_specs(lab)[:4], *QUICK, "--db", str(db))
    assert proc.returncode == 3, proc.stderr.decode()
    one_line_error(proc.stderr.decode())
    assert statuses(db) == ["failed"]  # not "running" forever


async def in_namespace(hosts: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """``certscan ARGS`` with ``hosts`` as its /etc/hosts (a private mount namespace)."""
    script = 'mount --bind "$0" /etc/hosts && exec "$@"'
    with trio.fail_after(60):
        return await trio.run_process(
            ["unshare", "--mount", "sh", "-c", script, str(hosts), PY, "-m", "scanner", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env={**os.environ, "COLUMNS": "200"},
        )


async def test_resume_refuses_a_plan_whose_names_resolve_differently(tmp_path: Path) -> None:
    require_tool("unshare")
    if os.geteuid() != 0:
        missing("a private mount namespace needs root")
    db, hosts = tmp_path / "inv.db", tmp_path / "hosts"
    name = "certscan-resume.test"
    args = ("sweep", name, "127.77.0.1", "-p", "9", *QUICK, "--db", str(db))
    hosts.write_text(f"127.0.0.1 localhost\n127.77.0.5 {name}\n")
    first = await in_namespace(hosts, *args)
    assert first.returncode == 0, first.stderr.decode()
    with Inventory(db_url(str(db))) as inv:
        (run,) = inv.scans()
        inv.finish_scan(run.id, "interrupted")
    # The same answer: the scan resumes.
    same = await in_namespace(hosts, *args, "--resume")
    assert same.returncode == 0, same.stderr.decode()
    assert f"resuming scan {run.id}" in same.stderr.decode()
    with Inventory(db_url(str(db))) as inv:
        inv.finish_scan(run.id, "interrupted")
    # The name now resolves elsewhere: positions 0..n of the old plan mean other targets.
    hosts.write_text(f"127.0.0.1 localhost\n127.77.0.6 {name}\n127.77.0.7 {name}\n")
    moved = await in_namespace(hosts, *args, "--resume")
    err = moved.stderr.decode()
    assert moved.returncode == 2, err
    one_line_error(err)
    assert f"scan {run.id} cannot be resumed" in err
    assert statuses(db) == ["interrupted"]
