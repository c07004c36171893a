"""``--discover``: the choice of mode, and whole sweeps with SYN discovery in a private netns.

The sweeps run in-process (``scanner.sweep.run.run``) with the main thread inside a namespace
of their own (``tests.netns``), real TLS servers there, nftables dropping the "dead" addresses
on the receiving side. The privilege tests run the real command with CAP_NET_RAW taken away
(``setpriv --bounding-set -net_raw``).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio
from rich.console import Console

from scanner.cli.console import ConsoleEvents
from scanner.errors import TargetError, UsageError
from scanner.models import EngineLimits
from scanner.sweep import discover
from scanner.sweep.discover import choose
from scanner.sweep.modes import DiscoverOptions, parse_options
from scanner.sweep.options import SweepOptions, SweepReport
from scanner.sweep.run import run
from tests import peers
from tests.conftest import require_tool
from tests.netns import Netns, private_netns, require_netns

RULES = """
table inet t {
    counter syns {}
    counter blocked {}
    counter elsewhere {}
    chain input {
        type filter hook input priority 0;
        ip daddr 127.66.0.0/24 tcp flags syn drop
    }
    chain output {
        type filter hook output priority 0;
        ip daddr != 127.0.0.0/8 counter name elsewhere
        tcp flags & (syn | ack) == syn ip daddr 127.66.1.8/29 counter name blocked
        tcp flags & (syn | ack) == syn counter name syns
    }
}
"""


def test_auto_picks_syn_with_privilege_and_connect_without() -> None:
    assert choose("auto", lambda: True).mode == "syn"
    fallback = choose("auto", lambda: False)
    assert fallback.mode == "connect"
    assert "CAP_NET_RAW" in fallback.why
    assert choose("connect", lambda: True).mode == "connect"
    assert choose("syn", lambda: True).mode == "syn"


def test_syn_without_privilege_names_setcap() -> None:
    with pytest.raises(UsageError, match=r"setcap cap_net_raw\+ep"):
        choose("syn", lambda: False)


@pytest.mark.parametrize(
    ("mode", "retries", "wait", "message"),
    [
        ("fast", 1, 1.0, "--discover"),
        ("syn", -1, 1.0, "--syn-retries"),
        ("syn", 11, 1.0, "--syn-retries"),
        ("syn", 1, 0.0, "--syn-wait"),
        ("syn", 1, 61.0, "--syn-wait"),
    ],
)
def test_bad_values_are_usage_errors(mode: str, retries: int, wait: float, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_options(mode, retries, wait)


@pytest.fixture
def ns() -> Iterator[Netns]:
    with private_netns() as made:
        made.nft(RULES)
        with made.entered():
            yield made


@pytest.fixture
async def listeners(ns: Netns) -> AsyncIterator[list[peers.Peer]]:
    ctx = peers.server_context(peers.make_pki().served)
    async with (
        peers.serve("127.66.1.3", peers.tls_server(ctx)) as a,
        peers.serve("127.66.1.9", peers.tls_server(ctx)) as b,
    ):
        yield [a, b]


def _options(tmp_path: Path, specs: list[str], ports: list[int], **extra: object) -> SweepOptions:
    fields: dict[str, object] = {
        "specs": tuple(specs),
        "ports": tuple(ports),
        "db_url": f"sqlite:///{tmp_path / 'inv.db'}",
        "db_label": "test",
        "json_mode": "all",
        "progress": False,
        "limits": EngineLimits(connect_timeout=0.5, handshake_timeout=3, target_deadline=5),
        "discover": DiscoverOptions(mode="syn", retries=1, wait=0.3),
    }
    fields.update(extra)
    return SweepOptions(**fields)  # type: ignore[arg-type]


async def _sweep(options: SweepOptions) -> tuple[SweepReport, list[dict[str, object]], str]:
    out, err = io.StringIO(), io.StringIO()
    with trio.fail_after(60):
        report = await run(options, out=out, events=ConsoleEvents(Console(file=err, width=300)))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    return report, lines, err.getvalue()


async def test_syn_sweep_finds_exactly_the_listeners_with_their_chains(
    tmp_path: Path, ns: Netns, listeners: list[peers.Peer]
) -> None:
    ports = sorted({p.port for p in listeners})
    live = {(p.address, p.port) for p in listeners}
    options = _options(tmp_path, ["127.66.1.0/28", "127.66.0.0/29"], ports)
    report, lines, err = await _sweep(options)
    assert report.exit_code in (0, 1)  # findings (a test PKI) may be judged; no failure
    ok = {(d["address"], d["port"]) for d in lines if d["status"] == "ok"}
    assert ok == live
    assert all(len(d["chain"]) == 2 for d in lines if d["status"] == "ok")  # type: ignore[arg-type]
    by_status = report.counters.by_status
    assert by_status["timeout"] == 8 * len(ports)  # the dropped /29
    assert by_status["refused"] == 16 * len(ports) - len(live)
    assert report.counters.done == 24 * len(ports)
    assert "discovery: syn" in err
    # Dead and refused targets are counted, not stored: the inventory holds the listeners.
    from scanner.inventory.store import Inventory

    inventory = Inventory(options.db_url)
    try:
        stored = {(r.address, r.port) for r in inventory.latest_endpoints(include_failures=True)}
    finally:
        inventory.close()
    assert stored == live
    # The same plan with connect discovery finds the same endpoints.
    connect = _options(tmp_path / "c", ["127.66.1.0/28", "127.66.0.0/29"], ports)
    (tmp_path / "c").mkdir()
    connect = SweepOptions(**{**_fields(connect), "discover": DiscoverOptions(mode="connect")})
    again, lines, err = await _sweep(connect)
    assert {(d["address"], d["port"]) for d in lines if d["status"] == "ok"} == live
    assert again.counters.by_status == by_status
    assert "discovery: connect" in err


def _fields(options: SweepOptions) -> dict[str, object]:
    return {name: getattr(options, name) for name in SweepOptions.__dataclass_fields__}


async def test_blocklist_and_public_guard_hold_before_any_packet(
    tmp_path: Path, ns: Netns, listeners: list[peers.Peer]
) -> None:
    port = listeners[1].port  # 127.66.1.9: inside the blocklisted /29
    options = _options(tmp_path, ["127.66.1.0/28"], [port], blocklist=("127.66.1.8/29",))
    report, lines, _ = await _sweep(options)
    assert report.counters.total == 8
    assert ns.counter("t", "blocked") == 0
    assert ns.counter("t", "syns") >= 8
    assert not any(d["address"] == "127.66.1.9" for d in lines)
    before = ns.lo_packets()
    public = _options(tmp_path, ["127.66.1.0/28", "8.8.8.8"], [port])
    with pytest.raises(TargetError, match="public"):
        await _sweep(public)
    assert ns.lo_packets() == before
    assert ns.counter("t", "elsewhere") == 0


async def test_resume_covers_both_phases(
    tmp_path: Path, ns: Netns, listeners: list[peers.Peer]
) -> None:
    ports = sorted({p.port for p in listeners})
    live = {(p.address, p.port) for p in listeners}
    slow = EngineLimits(connect_timeout=0.5, handshake_timeout=3, target_deadline=5, rate=20)
    specs = ["127.66.1.0/28", "127.66.0.0/28"]
    options = _options(tmp_path, specs, ports, resume=True, limits=slow)

    async def interrupt() -> None:
        # SYNs at 20/s, the dead /28 first on each port: once 30 SYNs are out, the first
        # dead targets have settled and most of the plan has not.
        while await trio.to_thread.run_sync(lambda: ns.counter("t", "syns")) < 30:
            await trio.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(interrupt)
        first, before, _ = await _sweep(options)
    assert first.interrupted
    assert 0 < first.counters.done < 64
    again, after, err = await _sweep(options)
    assert f"resuming scan {first.scan_id}" in err
    assert again.scan_id == first.scan_id
    assert not again.interrupted
    found = [(d["address"], d["port"]) for d in before + after if d["status"] == "ok"]
    assert sorted(set(found)) == sorted(live)
    assert again.counters.done == 64


def _certscan(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real command, with CAP_NET_RAW out of its bounding set (root or not)."""
    setpriv = require_tool("setpriv")
    return subprocess.run(
        [setpriv, "--bounding-set", "-net_raw", "--", sys.executable, "-m", "scanner", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if k != "CERTSCAN_DISCOVER"} | {"COLUMNS": "300"},
    )


def test_unprivileged_syn_is_one_line_and_exit_2(tmp_path: Path) -> None:
    require_netns()
    done = _certscan(
        "sweep",
        "127.0.0.1",
        "-p",
        "9",
        "--discover",
        "syn",
        "--db",
        str(tmp_path / "x.db"),
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "setcap cap_net_raw+ep" in lines[0]
    assert not (tmp_path / "x.db").exists()  # refused before the inventory was touched


async def test_unprivileged_auto_falls_back_to_connect(tmp_path: Path) -> None:
    require_netns()
    ctx = peers.server_context(peers.make_pki().served)
    async with peers.serve("127.66.9.1", peers.tls_server(ctx)) as peer:
        args = ["sweep", peer.address, "-p", str(peer.port), "--json", "--no-progress"]
        args += ["--db", str(tmp_path / "x.db")]
        done = await trio.to_thread.run_sync(lambda: _certscan(*args, cwd=tmp_path))
    assert done.returncode in (0, 1), done.stderr
    assert "discovery: connect (no raw-socket privilege" in done.stderr
    assert json.loads(done.stdout.splitlines()[0])["status"] == "ok", done.stderr


def test_summary_names_the_mode() -> None:
    assert discover.summary(discover.CONNECT, None) == "connect"
    stats = discover.SynStats(sent=3, open=1, refused=1, silent=1)
    line = discover.summary(choose("auto", lambda: True), stats)
    assert line.startswith("syn (raw sockets available): 3 SYNs sent")


async def test_workers_share_the_syn_scan(
    tmp_path: Path, ns: Netns, listeners: list[peers.Peer]
) -> None:
    """``--workers 2`` with SYN discovery: each worker SYNs its shard, the summary adds their
    packets up."""
    ports = ",".join(str(p) for p in sorted({p.port for p in listeners}))
    # trio starts processes from a worker thread, which need not be in the namespace.
    argv = ["ip", "netns", "exec", ns.name, sys.executable, "-m", "scanner", "sweep"]
    argv += ["127.66.1.0/28", "127.66.0.0/29"]
    argv += ["-p", ports, "--workers", "2", "--discover", "syn", "--syn-wait", "0.3"]
    argv += ["--json", "--no-progress", "--db", str(tmp_path / "w.db")]
    with trio.fail_after(120):
        done = await trio.run_process(
            argv, capture_stdout=True, capture_stderr=True, check=False, cwd=tmp_path
        )
    err = done.stderr.decode()
    assert done.returncode in (0, 1), err
    ok = {
        (d["address"], d["port"])
        for d in map(json.loads, done.stdout.decode().splitlines())
        if d["status"] == "ok"
    }
    assert ok == {(p.address, p.port) for p in listeners}
    # 24 addresses x 2 ports, and one retry to each of the 16 dropped targets.
    assert "discovery: syn: 64 SYNs sent (16 retries, 0 send failures)" in " ".join(err.split())
