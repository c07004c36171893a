"""``certscan check`` as Nagios/Icinga run it: a real process against the lab's real TLS servers
on 127.x, one status line on stdout, the plugin exit code."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from scanner.lab import catalogue as lab_mod
from tests.scanner.cli.test_app import certscan

LINE = re.compile(r"^CERTSCAN (OK|WARNING|CRITICAL|UNKNOWN) - [^|\n]+( \| [^\n]*)?\n$")


def _where(lab: lab_mod.Lab, name: str) -> str:
    endpoint = lab.by_name(name)
    return f"{endpoint.address}:{endpoint.port}"


async def _check(*args: str) -> tuple[int, str]:
    proc = await certscan("check", *args, timeout=60)
    out = proc.stdout.decode()
    assert LINE.match(out), out + proc.stderr.decode()
    assert proc.stderr == b""
    return proc.returncode, out


@pytest.fixture
def ca(lab: lab_mod.Lab, tmp_path: Path) -> str:
    path = tmp_path / "lab-ca.pem"
    path.write_bytes(lab.ca.cert_pem)
    return str(path)


async def test_states_and_exit_codes(lab: lab_mod.Lab, ca: str) -> None:
    trust = ("--ca-bundle", ca, "-t", "3")
    code, out = await _check(_where(lab, "healthy-rsa"), *trust)
    assert code == 0, out
    assert out.startswith("CERTSCAN OK - healthy-rsa.lab.certscan.test on ")
    days = float(re.search(r"\| days=([-0-9.]+);30;7;;", out)[1])  # type: ignore[index]
    assert 85 < days < 95
    assert "findings=1;;;0; endpoints=1;;;0;"  # the info no_pq_key_exchange in out

    code, out = await _check(_where(lab, "expiring"), *trust)
    assert (code, out.split(" - ")[0]) == (2, "CERTSCAN CRITICAL"), out
    code, out = await _check(_where(lab, "expiring"), *trust, "-w", "10d", "-c", "3")
    assert (code, out.split(" - ")[0]) == (1, "CERTSCAN WARNING"), out
    code, out = await _check(_where(lab, "expired"), *trust)
    assert code == 2
    assert " expired " in out

    # Findings at or above --warn-on / --crit-on.
    code, out = await _check(_where(lab, "weak-key"), *trust)
    assert code == 1
    assert "weak_key (high)" in out
    code, out = await _check(_where(lab, "weak-key"), *trust, "--crit-on", "high")
    assert code == 2
    code, out = await _check(_where(lab, "self-signed"), *trust, "--warn-on", "critical")
    assert code == 0, out


async def test_sni_and_unreachable(lab: lab_mod.Lab, ca: str) -> None:
    host = _where(lab, "healthy-rsa")
    code, out = await _check(host, "--ca-bundle", ca, "--sni", "other.example", "-t", "3")
    assert code == 1, out
    assert "hostname_mismatch" in out
    code, out = await _check(_where(lab, "not-tls"), "-t", "3")
    assert code == 2
    assert "not_tls" in out
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, out = await _check(f"127.0.0.1:{port}", "-t", "3")
    assert code == 2
    assert "refused" in out


@pytest.mark.parametrize(
    "args",
    [
        ("127.0.0.1:1", "-w", "soon"),
        ("127.0.0.1:1", "-w", "3d", "-c", "10d"),
        ("127.0.0.0/24",),
        ("127.0.0.1:1", "--warn-on", "loud"),
        ("127.0.0.1:1", "--no-such-option"),
        (),
    ],
)
async def test_usage_errors_are_unknown(args: tuple[str, ...]) -> None:
    code, out = await _check(*args)
    assert code == 3
    assert out.startswith("CERTSCAN UNKNOWN - ")
