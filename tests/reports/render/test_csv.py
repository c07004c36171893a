"""CSV reports read back with the csv module: columns, one row per endpoint x finding, formulas."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from reports.model import EndpointView
from reports.output import Report, build_report
from reports.render import format_for_path, get_renderer
from reports.render.csv import FINDINGS_COLUMNS, INVENTORY_COLUMNS, CsvRenderer, neutralise
from scanner.errors import UsageError
from scanner.models import CertInfo, Finding, Severity
from tests.reports.render.test_html import FORMULA_CN, NOW, SCRIPT_CN, sample_report


def _rows(data: bytes) -> list[dict[str, str]]:
    assert not data.startswith(b"\xef\xbb\xbf")  # no byte-order mark
    text = data.decode("utf-8")
    assert text.endswith("\r\n")
    assert "\n" not in text.replace("\r\n", "")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def _header(data: bytes) -> list[str]:
    return next(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("=1+2", "'=1+2"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("x=1", "x=1"),
        (" =1", " =1"),
        ("'=1", "'=1"),
        ("", ""),
        ("www.example.test", "www.example.test"),
    ],
)
def test_neutralise(text: str, expected: str) -> None:
    assert neutralise(text) == expected


def test_findings_rows_one_per_endpoint_and_finding() -> None:
    report = sample_report()
    data = CsvRenderer(kind="findings").render(report)
    assert _header(data) == list(FINDINGS_COLUMNS)
    rows = _rows(data)
    assert len(rows) == sum(max(1, len(v.findings)) for v in report.endpoints) == 10
    healthy = [r for r in rows if r["address"] == "127.0.0.1"]
    assert len(healthy) == 1
    assert healthy[0]["kind"] == healthy[0]["severity"] == healthy[0]["message"] == ""
    assert healthy[0]["subject_cn"] == "www.example.test"
    refused = next(r for r in rows if r["address"] == "127.0.0.6")
    assert refused["status"] == "refused"
    assert refused["subject_cn"] == refused["days_left"] == ""
    kinds = [(r["address"], r["severity"], r["kind"]) for r in rows if r["address"] == "127.0.0.5"]
    assert kinds == [
        ("127.0.0.5", "high", "self_signed"),
        ("127.0.0.5", "low", "long_validity"),
        ("127.0.0.5", "info", "certificate_changed"),
    ]
    cipher = next(r for r in rows if r["kind"] == "weak_cipher")
    assert cipher["sha256"] == ""  # endpoint-wide finding


def test_formula_payloads_are_neutralised_and_numbers_stay_numbers() -> None:
    rows = _rows(CsvRenderer(kind="findings").render(sample_report()))
    expired = [r for r in rows if r["address"] == "127.0.0.3"]
    assert {r["subject_cn"] for r in expired} == {"'" + FORMULA_CN}
    assert {r["days_left"] for r in expired} == {"-3"}  # numeric, not prefixed
    assert next(r for r in expired if r["kind"] == "long_validity")["message"] == (
        "'-97 days of validity"
    )
    hostile = next(r for r in rows if r["kind"] == "hostname_mismatch")
    assert hostile["subject_cn"] == SCRIPT_CN  # text is not HTML-escaped in CSV
    for row in rows:
        for column, value in row.items():
            if column not in ("port", "days_left"):
                assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), (column, value)


def test_inventory_rows_one_per_endpoint() -> None:
    report = sample_report()
    data = get_renderer("csv", csv_kind="inventory").render(report)
    assert _header(data) == list(INVENTORY_COLUMNS)
    rows = _rows(data)
    assert [(r["address"], r["port"]) for r in rows] == [
        (v.address, str(v.port)) for v in report.endpoints
    ]
    by_address = {r["address"]: r for r in rows}
    leaf = report.endpoints[1].chain[0]
    assert by_address["127.0.0.2"] == {
        "address": "127.0.0.2",
        "port": "443",
        "sni": "xss.example.test",
        "status": "ok",
        "error": "",
        "subject_cn": SCRIPT_CN,
        "issuer_cn": leaf.issuer_cn,
        "not_after": "2026-04-21T09:30:00Z",
        "days_left": "50",
        "key": "EC 256",
        "signature_hash": "sha256",
        "sha256": leaf.sha256,
        "findings": "2",
        "chain": "0",
        "tls_version": "TLSv1.3",
        "cipher": "TLS_AES_256_GCM_SHA384",
        "group": "",
        "legacy_capture": "",
    }
    assert by_address["127.0.0.3"]["days_left"] == "-3"
    assert by_address["127.0.0.6"]["error"] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    assert by_address["127.0.0.6"]["findings"] == "0"


def test_awkward_text_is_quoted_and_line_breaks_escaped() -> None:
    awkward = 'a "quoted", name\r\nwith a line break'
    leaf = CertInfo(
        der=b"",
        sha256="ab" * 32,
        subject_cn=awkward,
        issuer_cn="\tTab CA",
        not_after=NOW + timedelta(days=1),
    )
    view = EndpointView(
        address="::1",
        port=8443,
        sni=None,
        status="ok",
        error=None,
        tls_version="TLSv1.2",
        cipher="AES128-SHA",
        observed_at=None,
        scan_id=None,
        chain=(leaf,),
        findings=(
            Finding(
                kind="weak_cipher",
                severity=Severity.MEDIUM,
                message="+CBC, with SHA-1",
                address="::1",
                port=8443,
                sni=None,
            ),
        ),
    )
    report = build_report([view], generated_at=NOW, scan=None)
    (row,) = _rows(CsvRenderer(kind="inventory").render(report))
    assert row["subject_cn"] == 'a "quoted", name\\x0d\\x0awith a line break'
    assert row["issuer_cn"] == "\\x09Tab CA"  # escaped, so no longer a formula start
    assert row["days_left"] == "1"
    (finding,) = _rows(CsvRenderer().render(report))
    assert finding["message"] == "'+CBC, with SHA-1"
    assert finding["address"] == "::1"
    assert finding["sni"] == ""


def test_empty_report_is_just_the_header() -> None:
    report: Report = build_report((), generated_at=NOW, scan=None)
    assert CsvRenderer().render(report) == (",".join(FINDINGS_COLUMNS) + "\r\n").encode()


def test_renderer_registry() -> None:
    renderer = get_renderer("CSV")
    assert isinstance(renderer, CsvRenderer)
    assert renderer.kind == "findings"
    assert renderer.media_type.startswith("text/csv")
    with pytest.raises(UsageError, match="CSV kind"):
        get_renderer("csv", csv_kind="certificates")
    with pytest.raises(UsageError, match="report format"):
        get_renderer("xlsx")
    assert format_for_path("out/report.CSV") == "csv"
    assert format_for_path("report.htm") == "html"
    assert format_for_path("report") is None
    assert format_for_path("a.b/report") is None


def test_columns_are_stable() -> None:
    # Appending a column is fine; renaming or reordering breaks users' spreadsheets.
    assert FINDINGS_COLUMNS[:11] == (
        "address",
        "port",
        "sni",
        "status",
        "subject_cn",
        "not_after",
        "days_left",
        "severity",
        "kind",
        "message",
        "sha256",
    )
    assert INVENTORY_COLUMNS[:13] == (
        "address",
        "port",
        "sni",
        "status",
        "error",
        "subject_cn",
        "issuer_cn",
        "not_after",
        "days_left",
        "key",
        "signature_hash",
        "sha256",
        "findings",
    )
