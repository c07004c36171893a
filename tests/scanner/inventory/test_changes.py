"""What changed between scans, from real inventories (SQLite and PostgreSQL), through the
store, the CLI (``inventory --changes``) and the API (``/api/v1/changes``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes

from exporters.serve.api import ApiState, Reader, create_app
from reports import assess
from scanner.inventory.changes import read_changes
from scanner.inventory.store import Inventory, db_url
from scanner.lab import certgen
from scanner.models import FailureKind
from tests.exporters.test_prometheus import failure, handshake, record_scan
from tests.scanner.cli.test_app import certscan

DAY = timedelta(days=1)


def _history(inv: Inventory, now: datetime) -> dict[str, certgen.Issued]:
    root = certgen.make_ca("changes root")
    other = certgen.make_ca("changes other CA")
    a1 = certgen.make_leaf(root, cn="a.example", dns_names=["a.example"])
    a2 = certgen.make_leaf(root, cn="a.example", dns_names=["a.example"])  # renewed, new key
    b1 = certgen.make_leaf(root, cn="b.example", dns_names=["b.example"])
    b2 = certgen.make_leaf(other, cn="b.example", dns_names=["b.example"], key=b1.key)
    c1 = certgen.make_leaf(root, cn="c.example", dns_names=["c.example"])
    old, mid, last = now - 20 * DAY, now - 3 * DAY, now - DAY
    record_scan(
        inv,
        [
            handshake("127.0.9.1", a1, root, at=old),
            handshake("127.0.9.2", b1, root, at=old),
            handshake("127.0.9.3", c1, root, at=old),
        ],
    )
    record_scan(
        inv,
        [
            handshake("127.0.9.1", a2, root, at=mid),  # renewed
            handshake("127.0.9.2", b2, other, at=mid),  # new issuer, same key
            failure("127.0.9.3", FailureKind.REFUSED, at=mid),  # gone
            handshake("127.0.9.4", c1, root, at=mid),  # new endpoint
        ],
    )
    record_scan(inv, [handshake("127.0.9.3", c1, root, at=last)])  # back
    return {"a1": a1, "a2": a2, "b1": b1, "b2": b2, "c1": c1}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def inventory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Inventory]:
    url = (
        db_url(str(tmp_path / "i.db"))
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    inv = Inventory(str(url))
    try:
        yield inv
    finally:
        inv.close()


def _sha(issued: certgen.Issued) -> str:
    return issued.cert.fingerprint(hashes.SHA256()).hex()


def test_changes_in_the_window(inventory: Inventory) -> None:
    now = datetime.now(UTC)
    pki = _history(inventory, now)
    found = read_changes(inventory.engine, now - 7 * DAY)
    got = {(c.address, c.kind): c for c in found}
    assert sorted(got) == [
        ("127.0.9.1", "certificate_changed"),
        ("127.0.9.2", "certificate_changed"),
        ("127.0.9.3", "back"),
        ("127.0.9.3", "gone"),
        ("127.0.9.4", "new"),
    ]
    renewed = got[("127.0.9.1", "certificate_changed")]
    assert (renewed.old, renewed.new) == (_sha(pki["a1"]), _sha(pki["a2"]))
    assert (renewed.issuer_changed, renewed.key_changed) == (False, True)
    moved = got[("127.0.9.2", "certificate_changed")]
    assert (moved.issuer_changed, moved.key_changed) == (True, False)
    assert moved.new_issuer is not None
    assert "changes other CA" in moved.new_issuer
    gone = got[("127.0.9.3", "gone")]
    assert (gone.status, gone.old, gone.new) == ("refused", _sha(pki["c1"]), None)
    # A window that covers everything sees the first scan as new endpoints, no changes before.
    everything = read_changes(inventory.engine, now - 30 * DAY)
    assert sum(c.kind == "new" for c in everything) == 4
    assert read_changes(inventory.engine, now - timedelta(hours=1)) == []


async def test_cli_and_api(tmp_path: Path) -> None:
    path = tmp_path / "inv.db"
    inv = Inventory(db_url(str(path)))
    try:
        _history(inv, datetime.now(UTC))
    finally:
        inv.close()
    proc = await certscan("inventory", "--db", str(path), "--changes", "--since", "7d", "--json")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert sorted(d["kind"] for d in lines) == [
        "back",
        "certificate_changed",
        "certificate_changed",
        "gone",
        "new",
    ]
    table = await certscan("inventory", "--db", str(path), "--changes")
    assert table.returncode == 0
    assert b"5 changes" in table.stdout
    bad = await certscan("inventory", "--db", str(path), "--changes", "--since", "lately")
    assert bad.returncode == 2
    assert bad.stderr.decode().count("\n") == 1

    url = db_url(str(path))
    state = ApiState(
        reader=Reader(Inventory(url)),
        metrics_reader=Reader(Inventory(url)),
        criteria=assess.load_criteria(None, env={}),
    )
    try:
        transport = httpx.ASGITransport(app=create_app(state))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            body = (await client.get("/api/v1/changes", params={"since": "7d"})).json()
            assert len(body["changes"]) == 5
            assert {"old_sha256", "new_sha256", "issuer_changed", "key_changed"} <= set(
                body["changes"][0]
            )
            assert (await client.get("/api/v1/changes?since=nope")).status_code == 400
    finally:
        state.reader.close()
        state.metrics_reader.close()
