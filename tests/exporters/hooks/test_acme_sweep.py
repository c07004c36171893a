"""The renewal loop through the product: ``certscan sweep --run-hooks`` finds a certificate about
to expire on the lab server, the ``acme`` hook orders a new one from Pebble on loopback and
deploys it, and the next sweep sees the finding resolved and Pebble's certificate in place.

The CLI runs in subprocesses (``trio.run`` cannot nest in these trio tests) while Pebble and the
lab server run in the test's own trio loop, so every step is the real thing on 127.0.0.1.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives import hashes

from scanner.lab.certgen import make_ca, make_leaf
from tests.exporters.hooks.pebble import Pebble, free_port, run_pebble
from tests.exporters.hooks.test_acme import NAME, LabServer, _leaf
from tests.peers import serve, server_context
from tests.scanner.cli.test_app import certscan

LAB_ADDRESS = "127.3.5.9"


class ExpiringLab(LabServer):
    """``LabServer`` with a 90-day certificate in its last 3 days: the policy's ``expiring``
    (a 4-day certificate with 3 left is short-lived and not yet in its last third)."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        now = datetime.now(UTC)
        old = make_leaf(
            make_ca("certscan sweep lab root"),
            cn=NAME,
            dns_names=[NAME],
            not_before=now - timedelta(days=87),
            not_after=now + timedelta(days=3),
        )
        self.old, self.ctx = old.cert, server_context([old])


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CERTSCAN_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))


def write_config(tmp: Path, ca: Pebble, http_port: int, flag: Path) -> Path:
    """An ``[hooks.renew]`` acme hook writing where ``LabServer`` reloads from."""
    out = tmp / "out"
    deploy = [sys.executable, "-c", f"open({str(flag)!r}, 'w').close()"]
    path = tmp / "certscan.toml"
    path.write_text(
        "[hooks.renew]\n"
        'action = "acme"\n'
        'kinds = ["expiring"]\n'
        'addresses = ["127.0.0.0/8"]\n'
        "timeout = 15\n"
        f"directory = {json.dumps(ca.directory)}\n"
        f"ca_bundle = {json.dumps(str(ca.ca_bundle))}\n"
        f"account_key = {json.dumps(str(tmp / 'account.pem'))}\n"
        'contact = "ops@certscan.test"\n'
        'challenge = "http-01"\n'
        f'listen = "127.0.0.1:{http_port}"\n'
        f"names = [{json.dumps(NAME)}]\n"
        f"key = {json.dumps(str(out / 'key.pem'))}\n"
        f"cert = {json.dumps(str(out / 'cert.pem'))}\n"
        f"chain = {json.dumps(str(out / 'chain.pem'))}\n"
        f"fullchain = {json.dumps(str(out / 'fullchain.pem'))}\n"
        "command_timeout = 5\n"
        f"deploy = {json.dumps(deploy)}\n"
    )
    return path


async def json_lines(*args: str) -> list[dict[str, Any]]:
    proc = await certscan(*args, timeout=15)
    assert proc.returncode == 0, proc.stderr.decode()
    return [json.loads(line) for line in proc.stdout.decode().splitlines()]


async def test_sweep_run_hooks_renews_through_pebble(tmp_path: Path) -> None:
    http_port = free_port()
    lab = ExpiringLab(tmp_path)
    db = str(tmp_path / "inv.db")
    with trio.fail_after(40):
        async with (
            run_pebble(tmp_path, http_port=http_port) as ca,
            serve(LAB_ADDRESS, lab.handle) as peer,
        ):
            config = str(write_config(tmp_path, ca, http_port, lab.flag))
            sweep = (
                "sweep", f"{peer.address}:{peer.port}", "--sni", NAME, "--db", db,
                "--config", config, "--no-progress", "--quiet",
            )  # fmt: skip
            first = await certscan(*sweep, "--run-hooks", timeout=30)
            stderr = first.stderr.decode()
            assert first.returncode == 0, stderr
            assert "hooks: 1 succeeded, 0 failed, 0 queued" in stderr, stderr
            assert lab.flag.exists()
            live = await _leaf(peer.address, peer.port)
            assert lab.reloaded
            second = await certscan(*sweep, timeout=15)
            assert second.returncode == 0, second.stderr.decode()

    assert "Pebble Intermediate CA" in live.issuer.rfc4514_string()
    live_sha256 = live.fingerprint(hashes.SHA256()).hex()
    old_sha256 = lab.old.fingerprint(hashes.SHA256()).hex()
    assert live_sha256 != old_sha256

    findings = await json_lines("findings", "--json", "--all", "--db", db)
    (expiring,) = [f for f in findings if f["kind"] == "expiring"]
    assert expiring["sha256"] == old_sha256
    assert expiring["resolved_at"] is not None
    assert not [f for f in findings if f["kind"] == "expiring" and f["resolved_at"] is None]

    (endpoint,) = await json_lines("inventory", "--json", "--db", db)
    leaf = endpoint["chain"][0]
    assert leaf["sha256"] == live_sha256
    assert "Pebble Intermediate CA" in leaf["issuer"]
    not_after = datetime.fromisoformat(leaf["not_after"])
    assert not_after - datetime.now(UTC) > timedelta(days=300)

    (run,) = await json_lines("hooks", "history", "--json", "--db", db)
    assert (run["hook"], run["kind"], run["status"]) == ("renew", "expiring", "succeeded")
    assert run["sha256"] == old_sha256
    assert run["new_sha256"] == live_sha256
    assert (run["address"], run["port"], run["sni"]) == (LAB_ADDRESS, peer.port, NAME)
