"""A hostile server cannot choose what the ``acme`` hook orders.

The lab server presents an expiring certificate whose SANs add names outside the hook's config
(another domain, a wildcard, a name with a newline). ``certscan sweep --run-hooks`` orders from
Pebble on loopback; the certificate Pebble issued holds only the configured names, and the
refusal is in ``certscan hooks history``.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio
from cryptography import x509

from scanner.lab.certgen import make_ca, make_leaf
from tests.exporters.hooks.pebble import free_port, run_pebble
from tests.exporters.hooks.test_acme import NAME, LabServer
from tests.exporters.hooks.test_acme_sweep import json_lines
from tests.peers import serve, server_context
from tests.scanner.cli.test_app import certscan

HOSTILE_SANS = [NAME, "evil.attacker.test", "*.certscan.test", "x\ny.certscan.test"]


class HostileLab(LabServer):
    """An expiring certificate listing names the hook's operator never configured."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        now = datetime.now(UTC)
        old = make_leaf(
            make_ca("certscan hostile root"),
            cn=NAME,
            dns_names=HOSTILE_SANS,
            not_before=now - timedelta(days=87),
            not_after=now + timedelta(days=3),
        )
        self.old, self.ctx = old.cert, server_context([old])


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CERTSCAN_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))


def _config(tmp: Path, directory: str, bundle: Path, http_port: int, flag: Path) -> Path:
    out = tmp / "out"
    deploy = [sys.executable, "-c", f"open({str(flag)!r}, 'w').close()"]
    path = tmp / "certscan.toml"
    path.write_text(
        "[hooks.renew]\n"
        'action = "acme"\n'
        'addresses = ["127.0.0.0/8"]\n'
        'match_names = ["*.certscan.test"]\n'
        "timeout = 15\n"
        f"directory = {json.dumps(directory)}\n"
        f"ca_bundle = {json.dumps(str(bundle))}\n"
        f"account_key = {json.dumps(str(tmp / 'account.pem'))}\n"
        f'listen = "127.0.0.1:{http_port}"\n'
        f"key = {json.dumps(str(out / 'key.pem'))}\n"
        f"cert = {json.dumps(str(out / 'cert.pem'))}\n"
        f"fullchain = {json.dumps(str(out / 'fullchain.pem'))}\n"
        "command_timeout = 5\n"
        f"deploy = {json.dumps(deploy)}\n"
    )
    return path


async def test_the_order_holds_only_configured_names(tmp_path: Path) -> None:
    http_port = free_port()
    lab = HostileLab(tmp_path)
    db = str(tmp_path / "inv.db")
    with trio.fail_after(40):
        async with (
            run_pebble(tmp_path, http_port=http_port) as ca,
            serve("127.3.5.11", lab.handle) as peer,
        ):
            config = str(_config(tmp_path, ca.directory, ca.ca_bundle, http_port, lab.flag))
            sweep = (
                "sweep", f"{peer.address}:{peer.port}", "--sni", NAME, "--db", db,
                "--config", config, "--no-progress", "--quiet", "--run-hooks",
            )  # fmt: skip
            done = await certscan(*sweep, timeout=30)
            assert done.returncode == 0, done.stderr.decode()
            assert "hooks: 1 succeeded, 0 failed" in done.stderr.decode()

    issued = x509.load_pem_x509_certificate((tmp_path / "out" / "cert.pem").read_bytes())
    assert "Pebble" in issued.issuer.rfc4514_string()
    sans = issued.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [NAME]

    (run,) = await json_lines("hooks", "history", "--json", "--db", db)
    assert run["status"] == "succeeded"
    tail = run["output_tail"]
    assert "refused 3 name(s)" in tail
    assert "evil.attacker.test (matches none of match_names)" in tail
    assert "*.certscan.test (a wildcard" in tail
    assert "x\\x0ay.certscan.test" in tail  # shown escaped, never as a raw newline
    assert "\n" not in tail
