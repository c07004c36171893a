"""Strict-SNI servers (they answer only for the names they know and refuse a ClientHello without
SNI, as CDNs and ingress controllers do): per-target names (``ADDRESS:PORT=NAME``, the CSV
targets file) in ``sweep``, ``serve`` jobs and the ``dispatch`` plan, and SNI fan-out
(``--sni-file``, ``--sni-from``) that runs on every address that accepted TCP."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

from scanner.engine import discovery
from scanner.inventory.store import EndpointRecord, Inventory, db_url
from scanner.lab import certgen
from scanner.models import FailureKind, ScanFailure, Target
from scanner.zones.messages import PlanInputs
from tests import peers
from tests.conftest import missing

NAMES = ("alpha.strict.test", "beta.strict.test")


@pytest.fixture(scope="module")
def ca() -> certgen.Issued:
    return certgen.make_ca("certscan strict-SNI test root")


@pytest.fixture(scope="module")
def leaves(ca: certgen.Issued) -> dict[str, certgen.Issued]:
    return {name: certgen.make_leaf(ca, cn=name, dns_names=[name]) for name in NAMES}


def fp(issued: certgen.Issued) -> str:
    return hashlib.sha256(issued.der).hexdigest()


@asynccontextmanager
async def strict_server(
    address: str, leaves: dict[str, certgen.Issued]
) -> AsyncIterator[peers.Peer]:
    contexts = {name: peers.server_context([leaf]) for name, leaf in leaves.items()}
    handler = peers.tls_server_with_alerts(peers.strict_sni(contexts))
    async with peers.serve(address, handler) as peer:
        yield peer


async def certscan(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(timeout):
        return await trio.run_process(
            [sys.executable, "-m", "scanner", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env={k: v for k, v in os.environ.items() if k != "CERTSCAN_DB"},
        )


FAST = ("--connect-timeout", "2", "--handshake-timeout", "2", "--deadline", "4", "--no-progress")


def stored(db: Path) -> dict[tuple[str, int, str | None], EndpointRecord]:
    with Inventory(db_url(str(db))) as inv:
        records = inv.latest_endpoints(include_failures=True)
    return {(r.address, r.port, r.sni): r for r in records}


# --- per-target names -------------------------------------------------------------------------


async def test_sweep_pairs_and_a_csv_file_reach_a_strict_sni_server(
    leaves: dict[str, certgen.Issued], tmp_path: Path
) -> None:
    async with strict_server("127.98.0.1", leaves) as peer:
        csv_file = tmp_path / "targets.csv"
        csv_file.write_text(
            f"address,port,sni\n# the second name\n{peer.address},{peer.port},{NAMES[1]}\n"
        )
        db = tmp_path / "inv.db"
        proc = await certscan(
            "sweep",
            f"{peer.address}:{peer.port}={NAMES[0]}",
            f"{peer.address}:{peer.port}",
            "--targets-csv",
            str(csv_file),
            "--json-all",
            "--db",
            str(db),
            *FAST,
        )
    assert proc.returncode == 0, proc.stderr.decode()
    rows = {r["sni"]: r for r in map(json.loads, proc.stdout.decode().splitlines())}
    assert set(rows) == {None, *NAMES}
    for name in NAMES:
        assert rows[name]["status"] == "ok"
        assert rows[name]["chain"][0]["sha256"] == fp(leaves[name])
    assert rows[None]["status"] != "ok"  # without a name the server refuses
    got = stored(db)
    assert got[(peer.address, peer.port, NAMES[1])].chain[0].sha256 == fp(leaves[NAMES[1]])


async def test_a_bad_csv_row_is_one_line_with_its_line_number(tmp_path: Path) -> None:
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text("127.0.0.1,443,ok.example\n127.0.0.2,443,*.wild.example\n")
    for command in (["sweep"], ["dispatch", "--zone", "lab"]):
        proc = await certscan(*command, "--targets-csv", str(csv_file), "--db", str(tmp_path / "x"))
        err = proc.stderr.decode().strip()
        assert proc.returncode == 2, err
        assert len(err.splitlines()) == 1, err
        assert f"{csv_file}:2: target '127.0.0.2:443=*.wild.example'" in err
        assert "Traceback" not in err


async def test_a_serve_job_reads_pairs_and_a_csv_file(
    leaves: dict[str, certgen.Issued], tmp_path: Path
) -> None:
    async with strict_server("127.98.0.2", leaves) as peer:
        (tmp_path / "job.csv").write_text(f"{peer.address},{peer.port},{NAMES[1]}\n")
        config = tmp_path / "certscan.toml"
        config.write_text(
            f'[jobs.strict]\ntargets = ["{peer.address}:{peer.port}={NAMES[0]}"]\n'
            'targets_csv = "job.csv"\nevery = "1h"\nconnect_timeout = 1\n'
            "handshake_timeout = 2\ndeadline = 3\n",
            encoding="utf-8",
        )
        db = tmp_path / "serve.db"
        proc = await certscan(
            "serve", "--config", str(config), "--db", str(db), "--once", "--log-format", "json"
        )
    assert proc.returncode == 0, proc.stderr.decode()
    got = stored(db)
    assert {key[2] for key in got} == set(NAMES)
    for name in NAMES:
        assert got[(peer.address, peer.port, name)].chain[0].sha256 == fp(leaves[name])


def test_dispatch_carries_pairs_to_the_agents_plan() -> None:
    inputs = PlanInputs(
        specs=("127.0.0.5:443=www.example.org", "[::1]:8443=api.example.org"), ports=(443,)
    )
    back = PlanInputs.from_wire(json.loads(json.dumps(inputs.to_wire())))
    plan = [(t.address, t.port, t.sni) for t in back.build()]
    assert plan == [("127.0.0.5", 443, "www.example.org"), ("::1", 8443, "api.example.org")]


# --- fan-out on every address that accepted TCP -----------------------------------------------


async def test_an_sni_file_fans_out_on_a_strict_server_that_refuses_no_sni(
    leaves: dict[str, certgen.Issued], tmp_path: Path
) -> None:
    names = tmp_path / "names.txt"
    names.write_text(f"{NAMES[0]}\n{NAMES[1]}\ngamma.strict.test  # not served\n")
    async with strict_server("127.98.0.3", leaves) as peer:
        db = tmp_path / "fan.db"
        proc = await certscan(
            "sweep", f"{peer.address}:{peer.port}", "--sni-file", str(names),
            "--json-all", "--db", str(db), *FAST,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    rows = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    by_sni = {r["sni"]: r for r in rows}
    assert [r["sni"] for r in rows] == [*NAMES, "gamma.strict.test", None]  # follow-ups first
    assert by_sni[None]["status"] == "tls_alert"
    assert "unrecognized" in by_sni[None]["error"]
    assert by_sni["gamma.strict.test"]["status"] == "tls_alert"
    for name in NAMES:
        assert by_sni[name]["status"] == "ok"
        assert by_sni[name]["chain"][0]["sha256"] == fp(leaves[name])
    got = stored(db)
    assert len(got) == 4
    assert got[(peer.address, peer.port, NAMES[0])].chain[0].sha256 == fp(leaves[NAMES[0]])


async def test_ptr_fans_out_on_a_strict_server(ca: certgen.Issued, tmp_path: Path) -> None:
    name = await discovery.reverse_name("127.0.0.1")  # /etc/hosts answers; no resolver is asked
    if name is None:
        missing("127.0.0.1 has no reverse name in /etc/hosts")
    assert name is not None
    leaf = certgen.make_leaf(ca, cn=name, dns_names=[name])
    async with strict_server("127.0.0.1", {name.lower(): leaf}) as peer:
        db = tmp_path / "ptr.db"
        proc = await certscan(
            "sweep", f"127.0.0.1:{peer.port}", "--sni-from", "ptr", "--json-all",
            "--db", str(db), *FAST,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    by_sni = {r["sni"]: r for r in map(json.loads, proc.stdout.decode().splitlines())}
    assert by_sni[None]["status"] == "tls_alert"
    assert by_sni[name.lower()]["chain"][0]["sha256"] == fp(leaf)


async def test_no_fan_out_after_a_timeout_or_a_plaintext_peer(tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("a.strict.test\nb.strict.test\n")
    async with (
        peers.serve("127.98.0.4", peers.silent) as quiet,
        peers.serve("127.98.0.5", peers.speaks(peers.HTTP_ANSWER, first_read=True)) as http,
        peers.serve("127.98.0.6", peers.hang_up) as hangs,
    ):
        proc = await certscan(
            "sweep", f"{quiet.address}:{quiet.port}", f"{http.address}:{http.port}",
            f"{hangs.address}:{hangs.port}", "--sni-file", str(names), "--starttls", "off",
            "--json-all", "--db", str(tmp_path / "no.db"), "--connect-timeout", "1",
            "--handshake-timeout", "1", "--deadline", "2", "--no-progress",
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    rows = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    seen = sorted((r["address"], r["sni"] or "", r["status"]) for r in rows)
    assert seen == [
        ("127.98.0.4", "", "timeout"),
        ("127.98.0.5", "", "not_tls"),
        ("127.98.0.6", "", "reset"),
        ("127.98.0.6", "a.strict.test", "reset"),
        ("127.98.0.6", "b.strict.test", "reset"),
    ]
    assert quiet.tally.accepted == 1
    assert http.tally.accepted == 1
    assert hangs.tally.accepted == 6  # each of the 3 names, plus its one legacy capture


@pytest.mark.parametrize(
    ("kind", "connected", "fans"),
    [
        (FailureKind.TLS_ALERT, True, True),
        (FailureKind.RESET, True, True),
        (FailureKind.PROTOCOL_ERROR, True, True),
        (FailureKind.TLS_ALERT, False, False),
        (FailureKind.TIMEOUT, True, False),
        (FailureKind.NOT_TLS, True, False),
        (FailureKind.STARTTLS_REFUSED, True, False),
        (FailureKind.REFUSED, False, False),
        (FailureKind.CHAIN_TOO_LARGE, True, False),
    ],
)
def test_which_failures_fan_out(kind: FailureKind, connected: bool, fans: bool) -> None:
    failure = ScanFailure(
        target=Target(address="127.0.0.1", port=443),
        started_at=datetime.now(UTC),
        kind=kind,
        detail="",
        connected=connected,
    )
    assert discovery.fans_out(failure) is fans
