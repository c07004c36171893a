"""``[jobs.NAME]`` accepts every sweep option with sweep's validation (one line naming the
key), defaults to sweep's ports, and a real ``certscan serve --once`` applies them to the lab."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from exporters.serve.config import ServeSettings, serve_settings
from reports.policy import load_config
from scanner.errors import UsageError
from scanner.lab import catalogue as lab_mod
from scanner.plan.targets import DEFAULT_PORTS
from tests.exporters.serve.test_daemon import daemon, event

JOB = '[jobs.x]\ntargets = ["127.0.0.1"]\nevery = "1h"\n'


def settings(tmp_path: Path, text: str) -> ServeSettings:
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    return serve_settings(load_config(path, env={}))


def test_every_sweep_option(tmp_path: Path) -> None:
    (tmp_path / "names.txt").write_text("a.example\nb.example\n", encoding="utf-8")
    (tmp_path / "block.txt").write_text("127.0.0.9\n127.1.0.0/16\n", encoding="utf-8")
    (tmp_path / "skip.txt").write_text("127.0.0.8\n", encoding="utf-8")
    job = settings(
        tmp_path,
        JOB
        + """sni_from = ["san", "ptr"]
sni_file = "names.txt"
all_certs = true
probe_protocols = true
blocklist = "block.txt"
exclude = ["127.0.0.7"]
exclude_file = "skip.txt"
rate = 50
per_address = 4
handshakes = 32
resolve = "first"
max_targets = 1000
workers = 1
""",
    ).jobs["x"]
    assert job.sweep.discovery.sources == {"san", "ptr"}
    assert job.sweep.discovery.names == ("a.example", "b.example")
    assert (job.limits.all_certs, job.limits.probe_protocols) == (True, True)
    assert (job.limits.rate, job.limits.per_address, job.limits.handshakes) == (50.0, 4, 32)
    assert job.sweep.blocklist == ("127.0.0.9", "127.1.0.0/16")
    assert job.excludes == ("127.0.0.7", "127.0.0.8")
    assert (job.sweep.resolve_mode, job.sweep.max_targets) == ("first", 1000)


def test_default_ports_are_sweeps(tmp_path: Path) -> None:
    job = settings(tmp_path, JOB).jobs["x"]
    assert tuple(port for port, _ in job.ports) == DEFAULT_PORTS


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('sni_from = ["dns"]', "jobs.x.sni_from"),
        ('sni_file = "missing.txt"', "jobs.x.sni_file"),
        ("all_certs = 1", "jobs.x.all_certs"),
        ('blocklist = "bad-block.txt"', "jobs.x.blocklist"),
        ("rate = 0", "jobs.x.rate"),
        ('rate = "fast"', "jobs.x.rate"),
        ("per_address = 0", "jobs.x.per_address"),
        ("handshakes = -1", "jobs.x.handshakes"),
        ('resolve = "some"', "jobs.x.resolve"),
        ("max_targets = 0", "jobs.x.max_targets"),
        ("workers = 0", "jobs.x.workers"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, extra: str, key: str) -> None:
    (tmp_path / "bad-block.txt").write_text("not-an-address.example\n", encoding="utf-8")
    with pytest.raises(UsageError) as caught:
        settings(tmp_path, JOB + extra + "\n")
    message = str(caught.value)
    assert f"c.toml: {key}: " in message
    assert "\n" not in message


async def test_serve_job_uses_all_certs_and_blocklist(lab: lab_mod.Lab, tmp_path: Path) -> None:
    dual, blocked = lab.by_name("dual-cert"), lab.by_name("healthy-rsa")
    (tmp_path / "lab-ca.pem").write_bytes(lab.ca.cert_pem)
    (tmp_path / "block.txt").write_text(f"{blocked.address}\n", encoding="utf-8")
    config = tmp_path / "c.toml"
    config.write_text(
        f"""
[trust]
ca_bundles = ["lab-ca.pem"]
[jobs.lab]
targets = ["{dual.address}", "{blocked.address}"]
ports = "{dual.port},{blocked.port}"
every = "1h"
all_certs = true
blocklist = "block.txt"
deadline = 3
""",
        encoding="utf-8",
    )
    db = tmp_path / "inventory.db"
    async with daemon(config, db, "--once") as (process, log):
        await log.wait_for(event("scan stored", job="lab"), seconds=30)
        assert await process.wait() == 0
    with sqlite3.connect(db) as conn:
        addresses = {a for (a,) in conn.execute("SELECT address FROM endpoint")}
        alt = conn.execute("SELECT count(*) FROM observation_alt_certificate").fetchone()[0]
    assert addresses == {dual.address}  # the blocklisted address was never scanned
    assert alt >= 1  # --all-certs found the other key type's chain
