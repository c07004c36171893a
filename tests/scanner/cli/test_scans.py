"""``certscan scans`` and ``certscan scans show ID`` over real inventories (SQLite files and a
PostgreSQL database) holding a plain scan and a sharded one recorded as workers record them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from scanner.cli.scans import rate, shards_cell, spec_summary
from scanner.inventory.read import ScanRun
from scanner.inventory.store import Inventory, db_url
from scanner.lab import certgen
from tests.exporters.test_prometheus import failure, handshake, record_scan, record_sharded_scan
from tests.scanner.cli.test_app import one_line_error, run_main

EVIL = "agent lost \x1b[2J\u202eevil [bold]markup[/bold]"


@pytest.fixture(scope="module")
def leaf() -> certgen.Issued:
    root = certgen.make_ca()
    return certgen.make_leaf(root, cn="a.example", dns_names=["a.example"])


def fill(url: str, leaf: certgen.Issued) -> tuple[int, int]:
    """A finished plain scan and a running sharded one (4 shards); returns their ids."""
    inv = Inventory(url)
    try:
        plain = record_scan(inv, [handshake("127.0.9.1", leaf)])
        sharded = record_sharded_scan(
            inv,
            [
                ("done", [handshake("127.0.9.2", leaf), failure("127.0.9.3")], 2),
                ("running", [handshake("127.0.9.4", leaf)], 3),
                ("failed", [], 2),
                ("queued", [], 2),
            ],
            job="dmz",
            zone="dmz",
            error=EVIL,
        )
    finally:
        inv.close()
    return plain, sharded


@pytest.fixture
def filled(tmp_path: Path, leaf: certgen.Issued) -> tuple[str, int, int]:
    path = str(tmp_path / "inventory.db")
    plain, sharded = fill(db_url(path), leaf)
    return path, plain, sharded


def test_scans_lists_the_shards_column(
    filled: tuple[str, int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    path, plain, sharded = filled
    code, out, err = run_main(["scans", "--db", path], capsys)
    assert (code, err) == (0, "")
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("│")}
    assert "1/4 done, 1 failed" in rows[str(sharded)]
    assert "done" not in rows[str(plain)].split("finished")[-1]
    assert "shards" in out


def test_scans_json(filled: tuple[str, int, int], capsys: pytest.CaptureFixture[str]) -> None:
    path, plain, sharded = filled
    code, out, _ = run_main(["scans", "--db", path, "--json", "--limit", "5"], capsys)
    assert code == 0
    scans = [json.loads(line) for line in out.splitlines()]
    assert [s["id"] for s in scans] == [sharded, plain]
    assert (scans[1]["shards"], scans[1]["shard_states"]) == (None, None)
    assert scans[0]["shards"] == 4
    assert scans[0]["shard_states"] == {
        "queued": 1,
        "running": 1,
        "done": 1,
        "failed": 1,
        "interrupted": 0,
    }


def test_show_a_sharded_scan(
    filled: tuple[str, int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _, sharded = filled
    code, out, err = run_main(["scans", "show", str(sharded), "--db", path], capsys)
    assert (code, err) == (0, "")
    assert f"scan {sharded}: running" in out
    assert "job dmz; zone dmz" in out
    assert "total 9, done 3 (33.3%), ok 2, failed 1" in out
    assert "targets/s" in out
    assert "queued 1, running 1, done 1, failed 1, interrupted 0" in out
    shard_rows = [line for line in out.splitlines() if line.startswith("│")]
    assert len(shard_rows) >= 4
    assert "host/1" in out
    for progress in ("2/2", "1/3", "0/2"):
        assert progress in out
    # the error is shown escaped: no raw escape or bidi character, no markup interpreted
    assert "\x1b" not in out
    assert "\u202e" not in out
    assert "\\x1b[2J\\u202eevil [bold]markup[/bold]" in out


def test_show_counts_rejected_outcomes_and_dead_letters(
    filled: tuple[str, int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _, sharded = filled
    engine = sa.create_engine(db_url(path))
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE scan_shard SET rejected = 5, dead_letters = 1 WHERE shard = 1")
    engine.dispose()
    code, out, _ = run_main(["scans", "show", str(sharded), "--db", path], capsys)
    assert code == 0
    assert "ingest:   5 outcomes rejected" in out
    assert "1 messages dead-lettered" in out
    assert "shard 1: 5 outcomes rejected, 1 messages dead-lettered" in out
    code, out, _ = run_main(["scans", "show", str(sharded), "--db", path, "--json"], capsys)
    shards = json.loads(out)["shards"]
    assert [(s["rejected"], s["dead_letters"]) for s in shards][1] == (5, 1)


def test_retry_refuses_a_scan_not_dispatched(
    filled: tuple[str, int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    path, plain, _ = filled
    for scan in (str(plain), "999"):
        code, out, err = run_main(
            ["scans", "retry", scan, "--db", path, "--broker", "amqp://127.0.0.1:1//"], capsys
        )
        assert (code, out, err.count("\n")) == (2, "", 1)
    assert (
        "was not dispatched to a zone"
        in run_main(["scans", "retry", str(plain), "--db", path], capsys)[2]
    )


def test_show_a_plain_scan_and_json(
    filled: tuple[str, int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    path, plain, sharded = filled
    code, out, _ = run_main(["scans", "show", str(plain), "--db", path], capsys)
    assert code == 0
    assert f"scan {plain}: finished" in out
    assert "finished: " in out
    assert "shards" not in out
    # --db given before the subcommand works as well
    code, out, _ = run_main(["scans", "--db", path, "show", str(sharded), "--json"], capsys)
    assert code == 0
    body = json.loads(out)
    assert body["scan"]["id"] == sharded
    assert body["scan"]["spec"]["zone"] == "dmz"
    assert [s["status"] for s in body["shards"]] == ["done", "running", "failed", "queued"]
    assert body["shards"][2]["error"] == EVIL


@pytest.mark.parametrize("scan_id", ["999", "0"])
def test_show_an_unknown_scan_is_a_usage_error(
    filled: tuple[str, int, int], capsys: pytest.CaptureFixture[str], scan_id: str
) -> None:
    code, out, err = run_main(["scans", "show", scan_id, "--db", filled[0]], capsys)
    assert code == 2
    one_line_error(err)
    assert f"no scan {scan_id}" in err
    assert out == ""


def test_show_without_an_inventory_is_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "missing.db"
    code, _, err = run_main(["scans", "show", "1", "--db", str(db)], capsys)
    assert code == 3
    one_line_error(err)
    assert not db.exists()


def test_show_not_a_number_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["scans", "show", "abc"], capsys)
    assert code == 2
    one_line_error(err)


@pytest.mark.postgres
def test_show_on_postgresql(
    pg_url: str, leaf: certgen.Issued, capsys: pytest.CaptureFixture[str]
) -> None:
    _, sharded = fill(pg_url, leaf)
    code, out, err = run_main(["scans", "show", str(sharded), "--db", pg_url], capsys)
    assert (code, err) == (0, "")
    assert "queued 1, running 1, done 1, failed 1, interrupted 0" in out


# --- pure helpers -------------------------------------------------------------------------------


def _run(**changes: object) -> ScanRun:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    base: dict[str, object] = {
        "id": 1,
        "started_at": start,
        "finished_at": start + timedelta(seconds=10),
        "status": "finished",
        "spec": "{}",
        "total": 100,
        "watermark": 0,
        "done": 50,
        "ok": 40,
        "failed": 10,
        "version": "0",
    }
    return ScanRun(**(base | changes))  # type: ignore[arg-type]


def test_rate_and_shards_cell() -> None:
    run = _run()
    assert rate(run, datetime(2031, 1, 1, tzinfo=UTC)) == 5.0
    running = _run(finished_at=None)
    assert rate(running, running.started_at + timedelta(seconds=25)) == 2.0
    assert rate(running, running.started_at) is None
    assert shards_cell(run, None) == ""
    assert shards_cell(_run(shards=4), {"done": 4}) == "4/4 done"
    assert shards_cell(_run(shards=4), {"done": 1, "failed": 2}) == "1/4 done, 2 failed"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("not json", "(unreadable spec)"),
        ("[]", "(unreadable spec)"),
        ("{}", "(empty spec)"),
        (
            '{"specs": ["10.0.0.0/24", "a", "b", "c"], "ports": [443, 8443], "zone": "dmz"}',
            "targets 10.0.0.0/24, a, b (+1 more); ports 443, 8443; zone dmz",
        ),
        ('{"specs": ["x"], "workers": [7, 4]}', "targets x; 4 workers (seed 7)"),
        ('{"specs": ["x"], "shard": [7, 4, 2]}', "targets x; shard 2 of 4 (seed 7)"),
        ('{"job": "office", "shard_size": 256}', "job office; 256 addresses a shard"),
    ],
)
def test_spec_summary(spec: str, expected: str) -> None:
    assert spec_summary(spec) == expected
