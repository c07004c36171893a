"""A ``certscan serve`` job with a ``files`` section: a real daemon (``--once``) imports real
certificate files, refuses the path outside its roots, and the config is checked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from exporters.serve.config import serve_settings
from reports.policy import load_config
from scanner.errors import UsageError
from scanner.inventory.store import Inventory, db_url
from scanner.lab import certgen
from tests.exporters.serve.test_daemon import daemon, event


def write_certs(base: Path) -> Path:
    root = certgen.make_ca("Job Root")
    certs = base / "certs"
    certs.mkdir()
    now = datetime.now(UTC)
    site = certgen.make_leaf(
        root,
        cn="job.test",
        dns_names=["job.test"],
        not_before=now - timedelta(days=85),
        not_after=now + timedelta(days=3),
    )
    (certs / "site.pem").write_bytes(site.cert_pem)
    outside = base / "elsewhere.pem"
    outside.write_bytes(root.cert_pem)
    (certs / "escape.pem").symlink_to(outside)
    return certs


async def test_a_files_job_imports_and_records(tmp_path: Path) -> None:
    write_certs(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(
        '[jobs.certs]\nfiles = ["certs"]\nfile_roots = ["certs"]\nevery = "1h"\n', encoding="utf-8"
    )
    db = tmp_path / "inventory.db"
    async with daemon(config, db, "--once") as (process, log):
        with trio.fail_after(30):
            code = await process.wait()
        imported = await log.wait_for(event("files imported", job="certs"))
    assert code == 0
    assert (imported["endpoints"], imported["refused"]) == (1, 1)
    with Inventory(db_url(str(db))) as inventory:
        (record,) = inventory.latest_endpoints()
        kinds = {f.kind for f in inventory.findings()}
    assert record.address == f"file:{tmp_path}/certs/site.pem"
    assert "expiring" in kinds


def test_files_config_is_checked(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[jobs.x]\nfiles = [1]\nevery = "1h"\n', encoding="utf-8")
    with pytest.raises(UsageError, match=r"jobs\.x\.files"):
        serve_settings(load_config(config, env={}))
    config.write_text('[jobs.x]\nevery = "1h"\n', encoding="utf-8")
    with pytest.raises(UsageError, match="targets_csv or files"):
        serve_settings(load_config(config, env={}))
