"""Verify after renewal, across the fleet: three real TLS servers on loopback share the old
certificate; a ``command`` hook "renews" it with a deploy step that exits 0 without reloading
anything. The first re-probe records ``renewal_not_deployed`` on all three; after one server
really reloads, the next re-probe says "deployed on 1 of 3" (history, metric) and resolves its
finding only."""

from __future__ import annotations

import json
import ssl
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import trio
from cryptography.hazmat.primitives import hashes
from prometheus_client import CollectorRegistry

from exporters.hooks.config import parse_hooks
from exporters.hooks.runner import execute, plan, run_hooks
from exporters.hooks.verify import endpoints_to_check
from exporters.prometheus import CertscanCollector
from exporters.serve.api import ApiState, Reader, create_app
from reports import assess
from scanner.engine.crew import probe
from scanner.inventory import renewals
from scanner.inventory.store import Inventory
from scanner.lab.certgen import make_ca, make_leaf
from scanner.models import EngineLimits, Finding, Handshake, Severity
from scanner.parse import parse_certificate
from tests import peers
from tests.scanner.cli.test_app import certscan

FAST = EngineLimits(connect_timeout=2.0, handshake_timeout=2.0, target_deadline=3.0)
ADDRESSES = ("127.3.8.1", "127.3.8.2", "127.3.8.3")
NAME = "fleet.certscan.test"


class Reloadable:
    """A TLS server presenting ``ctx`` until ``reload`` swaps in another."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx

    async def handle(self, stream: trio.SocketStream) -> None:
        tls = trio.SSLStream(stream, self.ctx, server_side=True)
        await tls.do_handshake()
        while await tls.receive_some(4096):
            pass


async def test_a_deploy_that_does_not_reload_is_caught_and_fleet_progress_shown(
    tmp_path: Path,
) -> None:
    root = make_ca("certscan fleet root")
    now = datetime.now(UTC)
    old = make_leaf(root, cn=NAME, dns_names=[NAME], not_after=now + timedelta(days=3))
    new = make_leaf(root, cn=NAME, dns_names=[NAME], not_after=now + timedelta(days=90))
    old_sha = old.cert.fingerprint(hashes.SHA256()).hex()
    servers = [Reloadable(peers.server_context([old])) for _ in ADDRESSES]
    db = tmp_path / "inv.db"
    hook = parse_hooks(
        {
            "renew": {
                "action": "command",
                "command": [sys.executable, "-c", "print('certbot: renewed; deploy hook ran')"],
                "verify_within": 1,
            }
        },
        source="t.toml",
    ).hooks[0]
    with Inventory(f"sqlite:///{db}") as inv, trio.fail_after(30):
        async with (
            peers.serve(ADDRESSES[0], servers[0].handle) as a,
            peers.serve(ADDRESSES[1], servers[1].handle) as b,
            peers.serve(ADDRESSES[2], servers[2].handle) as c,
        ):
            outcomes = [await probe(p.target(NAME), FAST) for p in (a, b, c)]
            assert all(isinstance(o, Handshake) for o in outcomes)
            scan = inv.start_scan(spec={"targets": list(ADDRESSES)}, total=3)
            items = [(o, [parse_certificate(d) for d in o.chain]) for o in outcomes]  # type: ignore[union-attr]
            inv.record_batch(scan, items, watermark=3)
            records = inv.latest_endpoints()
            assert len(endpoints_to_check(records, old_sha)) == 3
            endpoints = {(r.address, r.port, r.sni): r for r in records}
            finding = Finding(
                kind="expiring",
                severity=Severity.HIGH,
                message="expires in 3 days",
                address=a.address,
                port=a.port,
                sni=NAME,
                sha256=old_sha,
            )
            (done,) = await execute(
                inv, plan([hook], [finding], endpoints, {}, now), concurrency=1, now=now
            )
            assert done.result is not None
            assert done.result.ok
            # the deploy step exited 0 and reloaded nothing: caught by the re-probes
            assert done.verified is not None
            assert (done.verified.deployed, done.verified.total) == (0, 3)
            not_deployed = {
                f.address for f in inv.findings(open_only=True) if f.kind == "renewal_not_deployed"
            }
            assert not_deployed == set(ADDRESSES)

            servers[0].ctx = peers.server_context([new])  # a real reload, on one server
            later = now + timedelta(minutes=5)
            assert await run_hooks(inv, parse_hooks({}, source="t.toml"), now=later) == []
            progress = renewals.progress(inv.engine, [done.run_id])
            assert progress == {done.run_id: (1, 3)}
            still = {
                f.address for f in inv.findings(open_only=True) if f.kind == "renewal_not_deployed"
            }
            assert still == {ADDRESSES[1], ADDRESSES[2]}
            (open_check,) = renewals.open_runs(inv.engine, later)
            assert open_check.run_id == done.run_id  # the run stays open until all deployed

            registry = CollectorRegistry(auto_describe=False)
            registry.register(CertscanCollector(inv))
            pending = registry.get_sample_value(
                "certscan_renewal_pending_endpoints", {"hook": "renew"}
            )
            assert pending == 2

    history = await certscan("hooks", "history", "--json", "--db", str(db), timeout=15)
    assert history.returncode == 0, history.stderr.decode()
    (run,) = [json.loads(line) for line in history.stdout.decode().splitlines()]
    assert (run["endpoints_deployed"], run["endpoints_total"]) == (1, 3)
    table = await certscan("hooks", "history", "--db", str(db), timeout=15)
    assert "deployed on 1 of 3" in table.stdout.decode()

    url = f"sqlite:///{db}"
    state = ApiState(
        reader=Reader(Inventory(url)),
        metrics_reader=Reader(Inventory(url)),
        criteria=assess.load_criteria(None, env={}),
    )
    try:
        transport = httpx.ASGITransport(app=create_app(state))
        async with httpx.AsyncClient(transport=transport, base_url="http://certscan.test") as api:
            (listed,) = (await api.get("/api/v1/hooks/runs")).json()["runs"]
        assert listed["deployment"] == {
            "deployed": 1,
            "total": 3,
            "line": "deployed on 1 of 3 endpoints",
        }
        metrics = state.registry
        assert metrics.get_sample_value("certscan_renewal_pending_endpoints", {"hook": "renew"})
    finally:
        state.reader.close()
        state.metrics_reader.close()


async def test_a_sweep_that_sees_a_certificate_change_checks_the_rest_of_the_fleet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No hook renewed anything: someone replaced the certificate on one of three servers. The
    sweep with ``--run-hooks`` sees ``certificate_changed`` there and re-probes the two that
    served the old certificate: "deployed on 1 of 3", ``renewal_not_deployed`` on the two."""
    monkeypatch.delenv("CERTSCAN_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    root = make_ca("certscan changed root")
    now = datetime.now(UTC)
    old = make_leaf(root, cn=NAME, dns_names=[NAME], not_after=now + timedelta(days=40))
    new = make_leaf(root, cn=NAME, dns_names=[NAME], not_after=now + timedelta(days=90))
    servers = [Reloadable(peers.server_context([old])) for _ in range(3)]
    db = str(tmp_path / "inv.db")
    addresses = ("127.3.10.1", "127.3.10.2", "127.3.10.3")
    with trio.fail_after(90):
        async with (
            peers.serve(addresses[0], servers[0].handle) as a,
            peers.serve(addresses[1], servers[1].handle) as b,
            peers.serve(addresses[2], servers[2].handle) as c,
        ):
            targets = [f"{p.address}:{p.port}" for p in (a, b, c)]
            sweep = ("sweep", *targets, "--sni", NAME, "--db", db, "--no-progress", "--quiet")
            first = await certscan(*sweep, timeout=40)
            assert first.returncode in (0, 1), first.stderr.decode()
            servers[0].ctx = peers.server_context([new])
            second = await certscan(*sweep, "--run-hooks", timeout=40)
            assert second.returncode in (0, 1), second.stderr.decode()
            history = await certscan("hooks", "history", "--json", "--db", db, timeout=20)
    (run,) = [json.loads(line) for line in history.stdout.decode().splitlines()]
    assert run["hook"] == "(certificate_changed)"
    assert run["sha256"] == old.cert.fingerprint(hashes.SHA256()).hex()
    assert (run["endpoints_deployed"], run["endpoints_total"]) == (1, 3)
    with Inventory(f"sqlite:///{db}") as inv:
        stragglers = {
            f.address for f in inv.findings(open_only=True) if f.kind == "renewal_not_deployed"
        }
    assert stragglers == {addresses[1], addresses[2]}
