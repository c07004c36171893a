"""The read API's guard (Host names against DNS rebinding, the read token, response headers)
and the live report's cache, in process over a real SQLite inventory and over a real socket
served by hypercorn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from exporters.serve.api import ApiState, Reader, create_app
from exporters.serve.guard import allowed_host_names, exposure_warning, host_allowed
from reports import assess
from scanner.inventory.store import Inventory, db_url
from scanner.lab import certgen
from tests.exporters.test_prometheus import handshake, record_scan

READ = "read-token-for-tests-0123"
ADMIN = "admin-token-for-tests-0123"


@pytest.fixture
def db(tmp_path: Path) -> str:
    root = certgen.make_ca()
    leaf = certgen.make_leaf(root, cn="a.example", dns_names=["a.example"], days=30)
    url = db_url(str(tmp_path / "inventory.db"))
    inv = Inventory(url)
    try:
        record_scan(inv, [handshake("127.0.9.1", leaf, root)])
    finally:
        inv.close()
    return url


@pytest.fixture
def state(db: str) -> AsyncIterator[ApiState]:
    made = ApiState(
        reader=Reader(Inventory(db)),
        metrics_reader=Reader(Inventory(db)),
        criteria=assess.load_criteria(None, env={}),
        token=ADMIN,
        allowed_hosts=allowed_host_names("127.0.0.1", ("certscan.corp.example",)),
    )
    yield made  # type: ignore[misc]
    made.reader.close()
    made.metrics_reader.close()


def _client(state: ApiState, host: str = "127.0.0.1:10943") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(state))
    return httpx.AsyncClient(transport=transport, base_url=f"http://{host}")


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1:10943", True),
        ("127.0.0.1", True),
        ("[::1]:10943", True),
        ("10.1.2.3:10943", True),  # an IP origin is the server's own: nothing to rebind
        ("localhost:10943", True),
        ("LOCALHOST.", True),
        ("certscan.corp.example:10943", True),
        ("evil.example:10943", False),
        ("localhost.evil.example", False),
        ("127.0.0.1.nip.io", False),
        ("", False),
        (None, False),
    ],
)
def test_host_rules(host: str | None, ok: bool) -> None:
    allowed = allowed_host_names("127.0.0.1", ("certscan.corp.example",))
    assert host_allowed(host, allowed) is ok


def test_allowed_names_follow_listen() -> None:
    assert allowed_host_names("0.0.0.0", ()) == frozenset()
    assert allowed_host_names("certscan.corp", ()) == {"certscan.corp"}
    assert allowed_host_names("::1", ("A.Example.",)) == {"localhost", "a.example"}


def test_exposure_warning() -> None:
    assert exposure_warning("127.0.0.1", None) is None
    assert exposure_warning("localhost", None) is None
    assert exposure_warning("10.0.0.5", READ) is None
    warning = exposure_warning("0.0.0.0", None)
    assert warning is not None
    assert "serve.read_token" in warning


async def test_rebinding_host_is_refused(state: ApiState) -> None:
    async with _client(state, "evil.example:10943") as client:
        for path in ("/", "/api/v1/endpoints", "/metrics"):
            got = await client.get(path)
            assert got.status_code == 421, path
            assert "a.example" not in got.text
    async with _client(state) as client:
        assert (await client.get("/api/v1/endpoints")).status_code == 200


async def test_read_token(state: ApiState) -> None:
    state.read_token = READ
    async with _client(state) as client:
        for path in ("/", "/api/v1/endpoints", "/metrics", "/api/v1/findings"):
            got = await client.get(path)
            assert got.status_code == 401, path
            assert got.headers["www-authenticate"] == "Bearer"
        wrong = await client.get("/metrics", headers={"Authorization": f"Bearer {READ}x"})
        assert wrong.status_code == 401
        for token in (READ, ADMIN):
            ok = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
            assert ok.status_code == 200
            assert b"certscan_endpoint_up" in ok.content
        assert (await client.get("/healthz")).status_code == 200  # probes stay open


async def test_headers_and_live_report_cache(state: ApiState, db: str) -> None:
    async with _client(state) as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["content-security-policy"] == "frame-ancestors 'none'"
        assert page.headers["x-frame-options"] == "DENY"
        api = await client.get("/api/v1/endpoints")
        assert api.headers["x-content-type-options"] == "nosniff"
        assert "content-security-policy" not in api.headers
        for _ in range(3):
            assert (await client.get("/")).content == page.content
        assert state.live.builds == 1  # one build for four requests
        root = certgen.make_ca()
        leaf = certgen.make_leaf(root, cn="new.example", dns_names=["new.example"], days=30)
        inv = Inventory(db)
        try:
            record_scan(inv, [handshake("127.0.9.7", leaf, root)])
        finally:
            inv.close()
        again = await client.get("/")
        assert state.live.builds == 2
        assert b"new.example" in again.content


async def test_over_a_real_socket(state: ApiState) -> None:
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            lambda task_status: hypercorn_serve(create_app(state), config, task_status=task_status)
        )  # type: ignore[arg-type]
        base = binds[0]
        async with httpx.AsyncClient(base_url=base) as client:
            assert (await client.get("/api/v1/endpoints")).status_code == 200
            rebound = await client.get("/api/v1/endpoints", headers={"Host": "evil.example"})
            assert rebound.status_code == 421
        nursery.cancel_scope.cancel()
