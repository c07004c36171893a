"""The command line, run as a user runs it: a real process, real lab servers, real databases."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives import hashes

from scanner.cli.app import main
from scanner.lab import servers as lab_mod

PY = sys.executable


async def certscan(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(timeout):
        return await trio.run_process(
            [PY, "-m", "scanner", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env={**os.environ, "COLUMNS": "200", **(env or {})},
        )


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def lab_specs(lab: lab_mod.Lab) -> list[str]:
    return [f"{e.address}:{e.port}" for e in lab.endpoints]


def one_line_error(err: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err


# --- usage errors: one line, exit 2, nothing sent -------------------------------------------


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["sweep", "127.0.0.0/33"], "127.0.0.0/33"),
        (["sweep", "127.0.0.1", "-p", "0"], "0"),
        (["sweep", "127.0.0.1", "-p", "70000"], "70000"),
        (["sweep", "127.0.0.1", "-p", "443-80"], "443-80"),
        (["sweep", "-f", "/nonexistent/targets.txt"], "/nonexistent/targets.txt"),
        (["sweep", "8.8.8.8", "--dry-run"], "--allow-public"),
        (["sweep", "224.0.0.1", "--dry-run"], "224.0.0.1"),
        (["sweep", "127.0.0.1", "--connect-timeout", "0"], "--connect-timeout"),
        (["sweep"], "no targets"),
        (["sweep", "127.0.0.1", "--resolve", "some"], "--resolve"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run_main([*argv, "--db", str(tmp_path / "x.db")], capsys)
    assert code == 2, err
    one_line_error(err)
    assert needle in err


def test_unknown_option_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["sweep", "--no-such-option"], capsys)
    assert code == 2
    assert "Traceback" not in err


def test_too_many_targets_needs_max_targets(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["sweep", "127.0.0.0/8", "-p", "443,8443", "--dry-run"], capsys)
    assert code == 2
    assert "--max-targets" in err
    code, out, _ = run_main(
        ["sweep", "127.0.0.0/8", "-p", "443,8443", "--dry-run", "--max-targets", "40000000"],
        capsys,
    )
    assert code == 0
    assert out.splitlines()[0] == f"{2 * 2**24} targets"


def test_dry_run_sends_nothing_and_lists_targets(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = tmp_path / "never.db"
    code, out, _ = run_main(
        [
            "sweep",
            "127.0.0.0/30",
            "-p",
            "443,8443",
            "--exclude",
            "127.0.0.2",
            "--dry-run",
            "--db",
            str(db),
        ],
        capsys,
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "6 targets"
    assert "127.0.0.2:443" not in out
    assert not db.exists()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["--version"], capsys)
    assert code == 0
    assert out.startswith("certscan ")


def test_unwritable_database_is_operational_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["sweep", "127.0.0.1", "-p", "9", "--db", "/proc/certscan.db"], capsys)
    assert code == 3, err
    one_line_error(err)


def test_help_lists_default_ports(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["sweep", "--help"], capsys)
    assert code == 0
    text = out.replace("\n", "").replace(" ", "")
    assert "25,110,143,389,443,465,587,636,993,995,3389,5432,8443" in text
    assert "--starttlsauto|off|PROTOCOL" in text


# --- sweeping the lab --------------------------------------------------------------------


async def test_sweep_json_matches_the_lab(lab: lab_mod.Lab, tmp_path: Path) -> None:
    db = tmp_path / "inv.db"
    proc = await certscan(
        "sweep",
        *lab_specs(lab),
        "--db",
        str(db),
        "--json-all",
        "--no-progress",
        "--handshake-timeout",
        "1",
        "--deadline",
        "2",
    )
    assert proc.returncode == 0, proc.stderr.decode()
    rows = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    by_addr: dict[tuple[str, int], dict[str, Any]] = {(r["address"], r["port"]): r for r in rows}
    assert len(by_addr) == len(lab.endpoints)
    for endpoint in lab.endpoints:
        row = by_addr[(endpoint.address, endpoint.port)]
        assert row["status"] == endpoint.expect, (endpoint.name, row)
        if endpoint.chain:
            got = [c["sha256"] for c in row["chain"]]
            want = [c.cert.fingerprint(hashes.SHA256()).hex() for c in endpoint.chain]
            if row["status"] in ("ok", "client_cert_required"):
                assert got == want, endpoint.name
                leaf = row["chain"][0]
                assert leaf["not_after"].endswith("Z")
                assert leaf["key_type"] in ("RSA", "EC")
    # The inventory holds the same: one observation per endpoint, certificates deduplicated.
    con = sqlite3.connect(db)
    try:
        (observations,) = con.execute("select count(*) from observation").fetchone()
        (certs,) = con.execute("select count(*) from certificate").fetchone()
    finally:
        con.close()
    assert observations == len(lab.endpoints)
    distinct = {c.der for e in lab.endpoints for c in e.chain}
    assert certs == len(distinct)


async def test_inventory_lists_soonest_expiry_first(lab: lab_mod.Lab, tmp_path: Path) -> None:
    db = tmp_path / "inv.db"
    proc = await certscan(
        "sweep",
        *lab_specs(lab),
        "--db",
        str(db),
        "--no-progress",
        "--quiet",
        "--handshake-timeout",
        "1",
        "--deadline",
        "2",
    )
    assert proc.returncode == 0, proc.stderr.decode()
    proc = await certscan("inventory", "--db", str(db), "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    rows = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    expiries = [r["chain"][0]["not_after"] for r in rows if r["chain"]]
    assert expiries == sorted(expiries)
    table = await certscan("inventory", "--db", str(db))
    assert table.returncode == 0
    assert b"soonest expiry first" in table.stdout


async def test_postgresql_round_trip(lab: lab_mod.Lab, pg_url: str) -> None:
    proc = await certscan(
        "sweep",
        *lab_specs(lab),
        "--db",
        pg_url,
        "--no-progress",
        "--quiet",
        "--handshake-timeout",
        "1",
        "--deadline",
        "2",
    )
    assert proc.returncode == 0, proc.stderr.decode()
    proc = await certscan("inventory", "--db", pg_url, "--json", "--all")
    assert proc.returncode == 0, proc.stderr.decode()
    rows = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert {(r["address"], r["port"]) for r in rows} == {(e.address, e.port) for e in lab.endpoints}


# --- interruption and resume ---------------------------------------------------------------


def _scan_state(db: Path) -> list[tuple[int, str, int, int]]:
    con = sqlite3.connect(db)
    try:
        return list(con.execute("select id, status, total, done from scan_run order by id"))
    finally:
        con.close()


def _done(db: Path) -> int:
    try:
        state = _scan_state(db)
    except sqlite3.Error:
        return 0
    return state[0][3] if state else 0


def _observation_count(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute("select count(*) from observation").fetchone()[0])
    finally:
        con.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
async def test_interrupt_then_resume_completes_exactly(tmp_path: Path, sig: int) -> None:
    # 2,048 closed loopback ports, paced at 1,000/s: about two seconds of work.
    db = tmp_path / "inv.db"
    args = [
        "sweep",
        "127.88.0.0/21",
        "-p",
        "9",
        "--db",
        str(db),
        "--no-progress",
        "--quiet",
        "--rate",
        "1000",
    ]
    proc = await trio.lowlevel.open_process([PY, "-m", "scanner", *args])
    try:
        with trio.fail_after(30):
            # Wait until some results are stored, then interrupt.
            while _done(db) < 200:
                await trio.sleep(0.05)
            proc.send_signal(sig)
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == (130 if sig == signal.SIGINT else -signal.SIGKILL)
    ((_, status, total, done),) = _scan_state(db)
    assert status == ("running" if sig == signal.SIGKILL else "interrupted")
    assert total == 2048
    assert 200 <= done < 2048
    resumed = await certscan(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert b"resuming scan" in resumed.stderr
    ((_, status, total, done),) = _scan_state(db)
    assert (status, total, done) == ("finished", 2048, 2048)
    # Nothing answered on those ports, so nothing was observed: counted, not stored.
    assert _observation_count(db) == 0


def test_lab_on_a_busy_port_is_one_line_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.77.9.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, _, err = run_main(["lab", "up", "--base", "127.77.9.1", "--port", str(port)], capsys)
    assert code == 3, err
    one_line_error(err)
    assert "already in use" in err


def test_lab_refuses_non_loopback(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["lab", "up", "--base", "192.0.2.1"], capsys)
    assert code == 2
    one_line_error(err)


@pytest.mark.parametrize("command", ["inventory", "scans"])
def test_reading_a_missing_inventory_is_exit_3_and_creates_nothing(
    command: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = tmp_path / "missing.db"
    code, _, err = run_main([command, "--db", str(db)], capsys)
    assert code == 3
    one_line_error(err)
    assert "run certscan sweep first" in err
    assert not db.exists()


def test_database_in_a_missing_directory_is_one_line_exit_3(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = tmp_path / "nonexistent" / "dir" / "x.db"
    code, _, err = run_main(["sweep", "127.0.0.1", "-p", "9", "--db", str(db)], capsys)
    assert code == 3, err
    one_line_error(err)
    assert "does not exist" in err
    assert not db.parent.parent.exists()
