"""The estate summary (reports.summary): counts over views, `certscan summary` over an
inventory of real certificate files, and /api/v1/summary over the daemon's test inventory."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from reports.model import EndpointView
from reports.summary import estate, lifetime_bucket
from scanner.lab import certgen
from scanner.models import CertInfo
from tests.exporters.serve.test_api import client, db_file, served  # noqa: F401 - fixtures
from tests.scanner.cli.test_app import run_main

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def cert(n: int, lifetime: float, *, org: str | None = "Example CA", key: str = "EC") -> CertInfo:
    return CertInfo(
        der=b"",
        sha256=f"{n:064x}",
        issuer_o=org,
        issuer_cn=f"Issuer {n}",
        not_before=NOW - DAY,
        not_after=NOW + (lifetime - 1) * DAY,
        key_type=key,
        key_bits=256 if key == "EC" else 2048,
    )


def view(n: int, leaf: CertInfo | None, **kw: object) -> EndpointView:
    fields: dict[str, object] = {
        "address": f"127.0.0.{n}",
        "port": 443,
        "sni": None,
        "status": "ok" if leaf else "refused",
        "error": None,
        "tls_version": "TLSv1.3" if leaf else None,
        "cipher": None,
        "observed_at": NOW,
        "scan_id": 1,
        "chain": (leaf,) if leaf else (),
        "findings": (),
    }
    fields.update(kw)
    return EndpointView(**fields)  # type: ignore[arg-type]


def test_counts_by_every_dimension() -> None:
    shared = cert(1, 47)
    views = (
        view(
            1, shared, owner="web", automation="automated", lead_days=(10.0, 10.5), group="x25519"
        ),
        view(
            2,
            shared,
            owner="web",
            automation="irregular",
            lead_days=(30.0, 2.0),
            group="X25519MLKEM768",
        ),
        view(3, cert(2, 398, org=None, key="RSA"), tls_version="TLSv1.2"),
        view(4, cert(3, 800), owner="db", automation="one renewal", lead_days=(5.0,)),
        view(5, None),
    )
    found = estate(views)
    assert (found.endpoints, found.with_certificates, found.certificates) == (5, 4, 3)
    assert [(g.label, g.endpoints, g.certificates) for g in found.by_owner] == [
        ("(unowned)", 2, 1),
        ("web", 2, 1),
        ("db", 1, 1),
    ]
    assert [(g.label, g.endpoints) for g in found.by_issuer] == [("Example CA", 3), ("Issuer 2", 1)]
    assert [(g.label, g.endpoints) for g in found.by_key_type] == [("EC 256", 3), ("RSA 2048", 1)]
    assert [(g.label, g.endpoints) for g in found.by_tls_version] == [
        ("TLSv1.3", 3),
        ("TLSv1.2", 1),
    ]
    assert [(g.label, g.endpoints) for g in found.by_key_exchange] == [
        ("not recorded", 2),
        ("X25519MLKEM768", 1),
        ("x25519", 1),
    ]
    assert [g.label for g in found.by_lifetime] == ["≤ 47 days", "≤ 398 days", "longer"]
    assert (found.automated, found.judged, found.automated_share) == (1, 2, 0.5)


def test_lifetime_buckets() -> None:
    assert lifetime_bucket(cert(1, 47)) == "≤ 47 days"
    assert lifetime_bucket(cert(1, 48)) == "≤ 100 days"
    assert lifetime_bucket(CertInfo(der=b"", sha256="0" * 64)) == "unknown"


def test_summary_command_over_imported_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CERTSCAN_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    root = certgen.make_ca("Summary Root")
    certs = tmp_path / "certs"
    certs.mkdir()
    for n, days in enumerate((40, 90, 365)):
        issued = certgen.make_leaf(root, cn=f"s{n}.test", dns_names=[f"s{n}.test"], days=days)
        (certs / f"s{n}.pem").write_bytes(issued.cert_pem)
    db = str(tmp_path / "summary.db")
    assert run_main(["import", str(certs), "--db", db], capsys)[0] == 0
    code, out, _ = run_main(["summary", "--json", "--db", db], capsys)
    document = json.loads(out)
    assert code == 0
    assert (document["endpoints"], document["certificates"]) == (3, 3)
    assert {g["label"]: g["endpoints"] for g in document["by_lifetime"]} == {
        "≤ 47 days": 1,
        "≤ 100 days": 1,
        "≤ 398 days": 1,
    }
    assert document["by_tls_version"] == [{"label": "file", "endpoints": 3, "certificates": 3}]
    assert document["by_key_exchange"] == [{"label": "file", "endpoints": 3, "certificates": 3}]
    assert [p["ok"] for p in document["trend"]] == [3]
    code, out, _ = run_main(["summary", "--db", db], capsys)
    assert code == 0
    assert "3 endpoints, 3 with certificates, 3 distinct leaves" in out


async def test_summary_route(client: httpx.AsyncClient) -> None:  # noqa: F811 - a fixture
    response = await client.get("/api/v1/summary", params={"scans": "5"})
    assert response.status_code == 200
    document = response.json()
    assert document["endpoints"] == 3
    assert document["by_owner"] == [{"label": "(unowned)", "endpoints": 3, "certificates": 2}]
    assert len(document["trend"]) == 1
    assert (await client.get("/api/v1/summary", params={"scans": "0"})).status_code == 400


async def test_endpoints_route_carries_the_owner(client: httpx.AsyncClient) -> None:  # noqa: F811
    body = (await client.get("/api/v1/endpoints")).json()
    assert {(e["owner"], e["environment"], tuple(e["tags"])) for e in body["endpoints"]} == {
        (None, None, ())
    }
