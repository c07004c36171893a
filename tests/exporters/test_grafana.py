"""The shipped Grafana dashboard: valid JSON of the expected shape, and every panel's PromQL
parses and returns data on a real Prometheus that scraped a real ``certscan serve`` (over an
inventory holding the lab, swept once by a job and once with ``--workers 2`` for shards)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import trio

from scanner.lab import catalogue as lab_mod
from tests.conftest import require_tool
from tests.exporters.serve.test_daemon import daemon, event, free_port, wait_until, write_config

DASHBOARD = (
    Path(__file__).resolve().parents[2] / "exporters" / "grafana" / "certscan-dashboard.json"
)
SECTIONS = ("Estate overview", "Expiring soon", "Findings by kind", "Scan health", "Shard progress")


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def _queries() -> list[tuple[str, str]]:
    out = []
    for panel in _dashboard()["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"].replace("$scrape_job", "certscan")))
    return out


def test_dashboard_shape() -> None:
    data = _dashboard()
    assert data["uid"] == "certscan-estate"
    rows = [p["title"] for p in data["panels"] if p["type"] == "row"]
    assert rows == list(SECTIONS)
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in data["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"
    assert len(_queries()) >= 20


async def test_every_panel_query_returns_data(lab: lab_mod.Lab, tmp_path: Path) -> None:
    prometheus = require_tool("prometheus")
    db = tmp_path / "inventory.db"
    config = write_config(tmp_path, lab, deadline=2.0)
    # A sharded sweep first, so the shard panels have a scan to show.
    specs = [f"{e.address}:{e.port}" for e in lab.endpoints]
    sweep = [sys.executable, "-m", "scanner", "sweep", *specs, "--db", str(db), "--workers", "2"]
    sweep += ["--seed", "1", "--deadline", "2", "--no-progress", "-q", "--config", str(config)]
    with trio.fail_after(60):
        done = await trio.run_process(sweep, capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode in (0, 1), done.stderr
    async with daemon(config, db) as (_process, log):
        base = (await log.wait_for(event("listening")))["urls"][0]
        await log.wait_for(event("scan stored", job="lab"), seconds=20)
        prom_port = free_port()
        (tmp_path / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: certscan\n"
            "    honor_labels: true\n"
            f"    static_configs: [{{targets: ['{base.removeprefix('http://')}']}}]\n",
            encoding="utf-8",
        )
        prom = await trio.lowlevel.open_process(
            [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{prom_port}") as api:

                async def query(expr: str) -> dict[str, Any]:
                    got = await api.get("/api/v1/query", params={"query": expr})
                    body: dict[str, Any] = got.json()
                    return body

                async def scraped() -> bool:
                    try:
                        body = await query('certscan_scan_duration_seconds{job="lab"}')
                    except httpx.TransportError:
                        return False
                    return bool(body.get("data", {}).get("result"))

                await wait_until(scraped, 20, "Prometheus to scrape the daemon")
                empty = []
                for title, expr in _queries():
                    body = await query(expr)
                    assert body["status"] == "success", (title, expr, body)
                    if not body["data"]["result"]:
                        empty.append((title, expr))
                assert empty == []
        finally:
            prom.terminate()
            with trio.CancelScope(shield=True):
                await prom.wait()
