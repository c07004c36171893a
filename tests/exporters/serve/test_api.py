"""The ``certscan serve`` HTTP app: in-process through httpx's ASGI transport, and over a real
socket on 127.0.0.1 served by hypercorn's trio worker. The inventory is a real SQLite file
filled with certificates built in code."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import jsonschema
import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives import hashes
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from prometheus_client.parser import text_string_to_metric_families

from exporters.serve.api import ApiState, Reader, create_app
from exporters.serve.openapi import openapi_document
from exporters.serve.scheduler import Scheduler, parse_cron
from reports import assess
from scanner.inventory import hooks as store_hooks
from scanner.inventory.store import Inventory, db_url
from scanner.lab import certgen
from scanner.models import FailureKind
from tests.exporters.test_prometheus import (
    failure,
    handshake,
    promtool_accepts,
    record_scan,
    record_sharded_scan,
)

TOKEN = "s3cret-token-for-tests-only"


@pytest.fixture(scope="module")
def db_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    """An inventory with two endpoints presenting certificates and one failure."""
    path = tmp_path_factory.mktemp("api") / "inventory.db"
    root = certgen.make_ca()
    leaf_a = certgen.make_leaf(root, cn="a.example", dns_names=["a.example"], days=5)
    leaf_b = certgen.make_leaf(root, cn="b.example", dns_names=["b.example"], days=200)
    inv = Inventory(db_url(str(path)))
    try:
        record_scan(
            inv,
            [
                handshake("127.0.9.1", leaf_a, root),
                handshake("127.0.9.2", leaf_b, root, port=8443),
                failure("127.0.9.3", FailureKind.NOT_TLS),
            ],
        )
    finally:
        inv.close()
    sha = {"a": leaf_a.cert.fingerprint(hashes.SHA256()).hex()}
    sha["b"] = leaf_b.cert.fingerprint(hashes.SHA256()).hex()
    return str(path), sha


class Runs:
    def __init__(self) -> None:
        self.names: list[str] = []
        self.release = trio.Event()

    async def __call__(self, name: str) -> None:
        self.names.append(name)
        await self.release.wait()


@pytest.fixture
async def served(db_file: tuple[str, dict[str, str]]) -> AsyncIterator[tuple[ApiState, Runs]]:
    url = db_url(db_file[0])
    runs = Runs()
    scheduler = Scheduler({"lab": parse_cron("0 0 1 1 *")}, runs)  # not due in a test
    state = ApiState(
        reader=Reader(Inventory(url)),
        metrics_reader=Reader(Inventory(url)),
        criteria=assess.load_criteria(None, env={}),
        token=TOKEN,
        scheduler=scheduler,
    )
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.serve)
            yield state, runs
            runs.release.set()
            nursery.cancel_scope.cancel()
    finally:
        state.reader.close()
        state.metrics_reader.close()


@pytest.fixture
async def client(served: tuple[ApiState, Runs]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(served[0]))
    async with httpx.AsyncClient(transport=transport, base_url="http://certscan.test") as c:
        yield c


async def test_healthz_readyz(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}


async def test_readyz_fails_when_the_database_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "gone.db"
    inv = Inventory(db_url(str(path)))
    state = ApiState(
        reader=Reader(inv),
        metrics_reader=Reader(inv),
        criteria=assess.load_criteria(None, env={}),
    )
    inv.engine.dispose()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.mkdir()  # a directory where the database file was: SQLite cannot open it
    transport = httpx.ASGITransport(app=create_app(state))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        got = await c.get("/readyz")
        scrape = await c.get("/metrics")
    assert got.status_code == 503
    assert "inventory" in got.json()["error"]
    assert scrape.status_code == 503


async def test_metrics(client: httpx.AsyncClient, db_file: tuple[str, dict[str, str]]) -> None:
    got = await client.get("/metrics")
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(got.text)}
    expiry = [
        s
        for s in families["certscan_certificate_not_after_timestamp_seconds"].samples
        if s.labels["address"] == "127.0.9.1" and s.labels["position"] == "leaf"
    ]
    assert [s.labels["sha256"] for s in expiry] == [db_file[1]["a"]]
    jobs = {s.name: s.value for s in families["certscan_job_runs"].samples}
    assert jobs == {"certscan_job_runs_total": 0}
    assert [s.labels for s in families["certscan_job_running"].samples] == [{"job": "lab"}]
    assert "certscan_job_next_run_timestamp_seconds" in families
    promtool_accepts(got.content)
    assert (await client.get("/metrics/")).status_code == 404  # exactly /metrics


async def test_endpoints_page(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/v1/endpoints")).json()
    assert body["total"] == 3
    assert [e["address"] for e in body["endpoints"]][:2] == ["127.0.9.1", "127.0.9.2"]
    page = (await client.get("/api/v1/endpoints", params={"limit": 1, "offset": 1})).json()
    assert [e["address"] for e in page["endpoints"]] == ["127.0.9.2"]
    assert page["endpoints"][0]["chain"][0]["subject"]


async def test_endpoints_by_cursor(client: httpx.AsyncClient) -> None:
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 2, "cursor": ""}
    for _ in range(5):  # bounded: 3 endpoints, 2 a page
        body = (await client.get("/api/v1/endpoints", params=params)).json()
        seen += [e["address"] for e in body["endpoints"]]
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert sorted(seen) == ["127.0.9.1", "127.0.9.2", "127.0.9.3"]
    assert len(seen) == 3  # each once
    bad = await client.get("/api/v1/endpoints", params={"cursor": "x'; drop"})
    assert bad.status_code == 400
    assert "cursor" in bad.json()["error"]


async def test_certificate(client: httpx.AsyncClient, db_file: tuple[str, dict[str, str]]) -> None:
    sha = db_file[1]["b"]
    body = (await client.get(f"/api/v1/certificates/{sha.upper()}")).json()
    assert body["certificate"]["sha256"] == sha
    assert body["endpoints"] == [
        {"address": "127.0.9.2", "port": 8443, "sni": None, "position": 0, "chain": 0}
    ]
    missing = await client.get("/api/v1/certificates/" + "0" * 64)
    assert missing.status_code == 404
    assert "no endpoint" in missing.json()["error"]


async def test_findings_filters(client: httpx.AsyncClient) -> None:
    every = (await client.get("/api/v1/findings")).json()["findings"]
    assert {f["kind"] for f in every} >= {"untrusted_root"}
    soon = (await client.get("/api/v1/findings", params={"expiring_within": "30d"})).json()
    assert {f["address"] for f in soon["findings"]} == {"127.0.9.1"}
    high = (await client.get("/api/v1/findings", params={"severity": "high"})).json()
    assert high["findings"]
    assert all(f["severity"] in ("high", "critical") for f in high["findings"])
    kind = (await client.get("/api/v1/findings", params={"kind": "untrusted_root"})).json()
    assert {f["kind"] for f in kind["findings"]} == {"untrusted_root"}


async def test_scans(client: httpx.AsyncClient) -> None:
    scans = (await client.get("/api/v1/scans")).json()["scans"]
    assert [s["status"] for s in scans] == ["finished"]
    one = (await client.get(f"/api/v1/scans/{scans[0]['id']}")).json()
    assert one["total"] == 3
    assert (await client.get("/api/v1/scans/999")).status_code == 404


@pytest.mark.parametrize(
    ("path", "params", "needle"),
    [
        ("/api/v1/findings", {"severity": "bogus"}, "severity"),
        ("/api/v1/findings", {"expiring_within": "soon"}, "expiring_within"),
        ("/api/v1/findings", {"kind": "no_such_kind"}, "kind"),
        ("/api/v1/endpoints", {"limit": "0"}, "limit"),
        ("/api/v1/endpoints", {"limit": "x"}, "limit"),
        ("/api/v1/endpoints", {"offset": "-1"}, "offset"),
        ("/api/v1/scans", {"limit": "100000"}, "limit"),
        ("/api/v1/scans/abc", {}, "scan id"),
        ("/api/v1/certificates/xyz", {}, "sha256"),
    ],
)
async def test_bad_parameters_are_400_json(
    client: httpx.AsyncClient, path: str, params: dict[str, str], needle: str
) -> None:
    got = await client.get(path, params=params)
    assert got.status_code == 400
    assert got.headers["content-type"] == "application/json"
    assert needle in got.json()["error"]


async def test_unknown_route_and_method_are_json(client: httpx.AsyncClient) -> None:
    got = await client.get("/probe", params={"target": "127.0.0.1:443"})
    assert (got.status_code, got.json()) == (404, {"error": "Not Found"})
    got = await client.get("/api/v1/jobs/lab/run")
    assert got.status_code == 405
    assert "error" in got.json()


async def test_run_job_needs_the_token(
    client: httpx.AsyncClient, served: tuple[ApiState, Runs]
) -> None:
    state, runs = served
    url = "/api/v1/jobs/lab/run"
    assert (await client.post(url)).status_code == 401
    wrong = await client.post(url, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == "Bearer"
    ok = await client.post(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert (ok.status_code, ok.json()) == (202, {"job": "lab", "status": "started"})
    again = await client.post(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert again.status_code == 409
    other = await client.post(
        "/api/v1/jobs/other/run", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert other.status_code == 404
    jobs = (await client.get("/api/v1/jobs")).json()["jobs"]
    assert jobs[0]["name"] == "lab"
    assert jobs[0]["running"] is True
    await trio.testing.wait_all_tasks_blocked()
    assert runs.names == ["lab"]
    state.tokens = {}
    disabled = await client.post(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert disabled.status_code == 403


async def test_hook_runs_are_approved_or_rejected_with_the_token(
    client: httpx.AsyncClient, served: tuple[ApiState, Runs]
) -> None:
    state = served[0]

    def pending(hook: str) -> int:
        return store_hooks.create(
            state.reader.inventory.engine,
            hook=hook,
            sha256="ab" * 32,
            address="127.0.9.1",
            port=443,
            sni=None,
            kind="expiring",
            status=store_hooks.PENDING,
            now=datetime.now(UTC),
        )

    approve_id, reject_id = pending("gate-a"), pending("gate-b")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = f"/api/v1/hooks/runs/{approve_id}/approve"
    assert (await client.post(url)).status_code == 401
    ok = await client.post(url, headers=auth)
    assert ok.status_code == 200
    assert ok.json()["status"] == "approved"
    assert (await client.post(url, headers=auth)).status_code == 404  # no longer pending
    no = await client.post(f"/api/v1/hooks/runs/{reject_id}/reject", headers=auth)
    assert no.json()["status"] == "rejected"
    bad = await client.post(f"/api/v1/hooks/runs/{reject_id}/maybe", headers=auth)
    assert bad.status_code == 404
    assert (await client.post("/api/v1/hooks/runs/x/approve", headers=auth)).status_code == 400
    huge = await client.post("/api/v1/hooks/runs/99999999999999999999999/approve", headers=auth)
    assert huge.status_code == 400  # was a 500: an integer too large for the database
    digits = await client.post("/api/v1/hooks/runs/\u0661\u0662/approve", headers=auth)
    assert digits.status_code == 400  # Arabic-Indic digits are digits to int(), not to us
    engine = state.reader.inventory.engine
    decided = {r: store_hooks.get(engine, r) for r in (approve_id, reject_id)}
    assert decided[approve_id] is not None
    assert decided[approve_id].status == store_hooks.APPROVED
    assert decided[reject_id] is not None
    assert decided[reject_id].status == store_hooks.REJECTED
    assert decided[approve_id].decided_by == "token:default"
    listed = (await client.get("/api/v1/hooks/runs")).json()["runs"]
    assert {r["id"]: r["status"] for r in listed} == {
        approve_id: "approved",
        reject_id: "rejected",
    }
    assert all(r["deployment"] is None for r in listed)


async def test_a_decision_records_the_named_token_not_a_claim(
    client: httpx.AsyncClient, served: tuple[ApiState, Runs]
) -> None:
    state = served[0]
    state.tokens = {"alice": "a" * 20, "ci-bot": "b" * 20}
    run_id = store_hooks.create(
        state.reader.inventory.engine,
        hook="gate",
        sha256="ab" * 32,
        address="127.0.9.1",
        port=443,
        sni=None,
        kind="expiring",
        status=store_hooks.PENDING,
        now=datetime.now(UTC),
    )
    url = f"/api/v1/hooks/runs/{run_id}/approve?by=root"
    wrong = await client.post(url, headers={"Authorization": "Bearer " + "c" * 20})
    assert wrong.status_code == 401
    ok = await client.post(url, headers={"Authorization": "Bearer " + "b" * 20, "X-By": "root"})
    assert ok.json()["by"] == "token:ci-bot"
    run = store_hooks.get(state.reader.inventory.engine, run_id)
    assert run is not None
    assert run.decided_by == "token:ci-bot"


async def test_report_and_openapi(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "127.0.9.1" in page.text
    doc = (await client.get("/api/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    assert "/api/v1/jobs/{name}/run" in doc["paths"]


async def test_real_socket_healthz_fast_during_a_slow_scrape(
    served: tuple[ApiState, Runs],
) -> None:
    """A scrape that hangs in its worker thread neither blocks the loop nor /healthz."""
    state = served[0]
    gate = threading.Event()
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.graceful_timeout = 0.5
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            lambda task_status: hypercorn_serve(
                create_app(state),  # type: ignore[arg-type]
                config,
                shutdown_trigger=stop.wait,
                task_status=task_status,
            )
        )
        base = binds[0]
        async with httpx.AsyncClient(base_url=base) as http:
            # hold the metrics lane: the scrape below waits in the limiter for this thread
            nursery.start_soon(state.metrics_reader.call, lambda _inv: gate.wait(10))
            scrape: list[httpx.Response] = []

            async def scrape_now() -> None:
                scrape.append(await http.get("/metrics"))

            nursery.start_soon(scrape_now)
            with trio.fail_after(5):  # the scrape is in flight, queued behind the held lane
                while state.metrics_reader.queued < 1:
                    await trio.sleep(0.01)
            with trio.fail_after(1):
                assert (await http.get("/healthz")).status_code == 200
                assert (await http.get("/api/v1/scans")).status_code == 200
            assert not scrape
            gate.set()
            with trio.fail_after(5):
                while not scrape:
                    await trio.sleep(0.01)
            assert scrape[0].status_code == 200
            assert b"certscan_endpoint_up" in scrape[0].content
        stop.set()


# --- sharded scans ------------------------------------------------------------------------------


def _validator(name: str) -> jsonschema.protocols.Validator:
    """A validator for ``#/components/schemas/NAME`` of the served OpenAPI document."""
    schema = {
        "$ref": f"#/components/schemas/{name}",
        "components": openapi_document()["components"],
    }
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture
async def sharded_client(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, int, int]]:
    """An app over an inventory with a plain scan and a running sharded one (4 shards)."""
    root = certgen.make_ca()
    leaf = certgen.make_leaf(root, cn="a.example", dns_names=["a.example"])
    url = db_url(str(tmp_path / "sharded.db"))
    inv = Inventory(url)
    try:
        plain = record_scan(inv, [handshake("127.0.9.1", leaf, root)])
        sharded = record_sharded_scan(
            inv,
            [
                ("done", [handshake("127.0.9.2", leaf, root)], 1),
                ("running", [failure("127.0.9.3")], 3),
                ("failed", [], 2),
                ("queued", [], 2),
            ],
            zone="dmz",
            error="agent lost \x1b[31m",
        )
    finally:
        inv.close()
    state = ApiState(
        reader=Reader(Inventory(url)),
        metrics_reader=Reader(Inventory(url)),
        criteria=assess.load_criteria(None, env={}),
    )
    transport = httpx.ASGITransport(app=create_app(state))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://certscan.test") as c:
            yield c, plain, sharded
    finally:
        state.reader.close()
        state.metrics_reader.close()


async def test_scans_carry_their_shard_states(
    sharded_client: tuple[httpx.AsyncClient, int, int],
) -> None:
    client, plain, sharded = sharded_client
    listed = (await client.get("/api/v1/scans")).json()
    _validator("ScanList").validate(listed)
    by_id = {s["id"]: s for s in listed["scans"]}
    assert (by_id[plain]["shards"], by_id[plain]["shard_states"]) == (None, None)
    assert by_id[sharded]["shards"] == 4
    states = {"queued": 1, "running": 1, "done": 1, "failed": 1, "interrupted": 0}
    assert by_id[sharded]["shard_states"] == states
    one = (await client.get(f"/api/v1/scans/{sharded}")).json()
    _validator("Scan").validate(one)
    assert one == by_id[sharded]
    assert (one["total"], one["done"], one["ok"], one["failed"]) == (8, 2, 1, 1)


async def test_scan_shards_route(sharded_client: tuple[httpx.AsyncClient, int, int]) -> None:
    client, plain, sharded = sharded_client
    got = await client.get(f"/api/v1/scans/{sharded}/shards")
    assert got.status_code == 200
    body = got.json()
    _validator("ShardList").validate(body)
    assert body["scan_id"] == sharded
    shards = body["shards"]
    assert [s["shard"] for s in shards] == [0, 1, 2, 3]
    assert [s["status"] for s in shards] == ["done", "running", "failed", "queued"]
    assert {s["zone"] for s in shards} == {"dmz"}
    assert [(s["done"], s["total"]) for s in shards] == [(1, 1), (1, 3), (0, 2), (0, 2)]
    assert shards[1]["agent"] == "host/1"
    assert shards[1]["attempts"] == 1
    assert shards[2]["error"] == "agent lost \x1b[31m"  # JSON escapes it; clients must too
    assert shards[3]["started_at"] is None
    assert shards[0]["finished_at"].endswith("Z")
    plain_shards = (await client.get(f"/api/v1/scans/{plain}/shards")).json()
    assert plain_shards == {"scan_id": plain, "shards": []}
    missing = await client.get("/api/v1/scans/999/shards")
    assert missing.status_code == 404
    assert missing.json() == {"error": "no scan 999"}
    bad = await client.get("/api/v1/scans/x1/shards")
    assert bad.status_code == 400
    assert "scan id" in bad.json()["error"]


async def test_openapi_documents_every_route(
    client: httpx.AsyncClient, served: tuple[ApiState, Runs]
) -> None:
    doc = (await client.get("/api/v1/openapi.json")).json()
    assert "/api/v1/scans/{scan_id}/shards" in doc["paths"]
    jsonschema.Draft202012Validator.check_schema(doc["components"]["schemas"]["Shard"])
    paths = {getattr(r, "path", "") for r in create_app(served[0]).routes}
    app_routes = {p for p in paths if p.startswith("/api/")}
    documented = {p.replace("{decision}", "{decision:str}") for p in doc["paths"]}
    assert app_routes - {"/api/v1/openapi.json"} == documented
