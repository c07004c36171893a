"""The JSON report validated against its JSON Schema, and the report model it is built from."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from reports.model import EndpointView
from reports.output import ScanInfo, build_report, days_left
from reports.render import get_renderer
from reports.render.json import JsonRenderer, load_schema, report_to_dict
from scanner.models import CertInfo
from scanner.serialize import cert_to_dict
from tests.reports.render.test_html import (
    BIDI_CN,
    NOW,
    SCRIPT_CN,
    sample_report,
    sample_views,
    synthetic_views,
)

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "reports" / "schema" / "report.schema.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = load_schema()
    assert schema == json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _document() -> dict[str, Any]:
    data = JsonRenderer().render(sample_report())
    assert data.endswith(b"\n")
    assert data.count(b"\n") == 1
    data.decode("ascii")  # non-ASCII is escaped
    parsed: dict[str, Any] = json.loads(data)
    return parsed


def test_report_validates_against_the_schema(validator: jsonschema.protocols.Validator) -> None:
    validator.validate(_document())


def test_endpoints_carry_chains_as_sweep_json_and_findings() -> None:
    document = _document()
    report = sample_report()
    assert [(e["address"], e["sni"]) for e in document["endpoints"]] == [
        (v.address, v.sni) for v in report.endpoints
    ]
    hostile = document["endpoints"][1]
    assert hostile["chain"] == [cert_to_dict(c) for c in report.endpoints[1].chain]
    assert hostile["chain"][0]["subject"] == "CN=\\<script\\>alert(1)\\</script\\>"
    assert hostile["findings"][0] == {
        "kind": "hostname_mismatch",
        "severity": "high",
        "message": f"name {SCRIPT_CN} is not covered; SANs: {{{{7*7}}}}",
        "sha256": report.endpoints[1].chain[0].sha256,
    }
    assert hostile["findings"][1]["sha256"] is None
    refused = document["endpoints"][5]
    assert refused["status"] == "refused"
    assert refused["chain"] == []
    assert refused["tls_version"] is None
    assert refused["error"].startswith("@SUM")
    assert document["scan"] == {
        "id": 7,
        "started_at": "2026-03-02T09:24:00Z",
        "finished_at": "2026-03-02T09:26:00Z",
    }
    assert document["generated_at"] == "2026-03-02T09:30:00Z"
    assert any(
        BIDI_CN in (e["chain"][0]["subject"] if e["chain"] else "") for e in document["endpoints"]
    )


def test_certificates_are_distinct_with_where_served() -> None:
    document = _document()
    certificates = document["certificates"]
    assert len(certificates) == 7
    assert len({c["sha256"] for c in certificates}) == 7
    root = next(c for c in certificates if c["subject"] == "O=certscan lab,CN=certscan test root")
    assert [(p["address"], p["position"]) for p in root["served_at"]] == [
        ("127.0.0.1", 2),
        ("127.0.0.2", 2),
        ("127.0.0.3", 2),
        ("127.0.0.4", 2),
    ]
    for certificate in certificates:
        served = {k: v for k, v in certificate.items() if k != "served_at"}
        assert list(served) == list(cert_to_dict(sample_report().certificates[0].cert))


def test_summary() -> None:
    summary = _document()["summary"]
    assert summary == {
        "endpoints": 6,
        "endpoints_with_certificates": 5,
        "certificates": 7,
        "expired": 1,
        "findings": 8,
        "by_severity": {"critical": 2, "high": 2, "medium": 1, "low": 2, "info": 1},
        "by_kind": {
            "certificate_changed": 1,
            "expired": 1,
            "expiring": 1,
            "hostname_mismatch": 1,
            "long_validity": 2,
            "self_signed": 1,
            "weak_cipher": 1,
        },
        "next_expiry": {
            "not_after": "2026-03-07T09:30:00Z",
            "days_left": 5,
            "sha256": sample_report().endpoints[3].chain[0].sha256,
            "subject_cn": "soon.example.test",
            "address": "127.0.0.4",
            "port": 443,
            "sni": "soon.example.test",
        },
    }
    assert list(summary["by_severity"]) == ["critical", "high", "medium", "low", "info"]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["endpoints"][0].update(extra=1),  # an undocumented key
        lambda d: d["endpoints"][0]["chain"][0].update(extra=1),
        lambda d: d["certificates"][0].pop("served_at"),
        lambda d: d["endpoints"][1]["findings"][0].update(severity="urgent"),
        lambda d: d["summary"]["by_severity"].pop("info"),
        lambda d: d.update(generated_at="2026-03-02 09:30"),
        lambda d: d["endpoints"][0].update(port=70000),
        lambda d: d["certificates"][0].update(sha256="AB" * 32),
    ],
)
def test_schema_rejects_drift(validator: jsonschema.protocols.Validator, mutate: Any) -> None:
    document = copy.deepcopy(_document())
    mutate(document)
    assert not validator.is_valid(document)


def test_edge_cases_validate(validator: jsonschema.protocols.Validator) -> None:
    broken = CertInfo(der=b"\x30\x03\x02\x01\x01", sha256="cd" * 32, error="not a certificate")
    view = EndpointView(
        address="::1",
        port=0,
        sni=None,
        status="ok",
        error=None,
        tls_version="TLSv1.3",
        cipher="TLS_AES_128_GCM_SHA256",
        observed_at=None,
        scan_id=None,
        chain=(broken,),
        findings=(),
    )
    running = ScanInfo(id=1, started_at=NOW, finished_at=None)
    for report in (
        build_report((), generated_at=NOW, scan=None),
        build_report([view], generated_at=NOW, scan=running),
        build_report(synthetic_views(50), generated_at=NOW, scan=None),
    ):
        document = report_to_dict(report)
        validator.validate(json.loads(json.dumps(document)))
    empty = report_to_dict(build_report((), generated_at=NOW, scan=None))
    assert empty["scan"] is None
    assert empty["summary"]["next_expiry"] is None


def test_registry() -> None:
    renderer = get_renderer("json")
    assert isinstance(renderer, JsonRenderer)
    assert renderer.media_type == "application/json"


# --- the report model ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(days=5), 5),
        (timedelta(days=5, hours=23), 5),
        (timedelta(hours=12), 0),
        (timedelta(seconds=-1), -1),
        (timedelta(days=-3), -3),
        (timedelta(days=-3, hours=-1), -4),
    ],
)
def test_days_left(delta: timedelta, expected: int) -> None:
    assert days_left(NOW + delta, NOW) == expected


def test_build_report_requires_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone"):
        build_report((), generated_at=datetime(2026, 1, 1), scan=None)


def test_next_expiry_skips_expired_and_undated_certificates() -> None:
    views = sample_views()
    report = build_report(views, generated_at=NOW + timedelta(days=6), scan=None)
    nxt = report.summary.next_expiry
    assert nxt is not None
    assert nxt.subject_cn == SCRIPT_CN
    assert report.summary.expired == 2
    far = build_report(views, generated_at=NOW + timedelta(days=20_000), scan=None)
    assert far.summary.next_expiry is None
    assert far.summary.expired == far.summary.certificates == 7
