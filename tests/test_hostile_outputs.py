"""The shared table of hostile code points (``tests/hostile.py``) against every output that
shows text: the terminal, finding messages, CSV cells, the HTML report and ``serve`` logs."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from exporters.serve.log import JsonFormatter, TextFormatter
from reports.model import EndpointView
from reports.names import clean, quote
from reports.output import build_report
from reports.render.csv import CsvRenderer
from reports.render.html import HtmlRenderer
from scanner.cli.console import inventory_table
from scanner.inventory.store import EndpointRecord
from scanner.models import CertInfo, Finding, Severity
from tests.hostile import HOSTILE, sample

NOW = datetime(2026, 12, 1, tzinfo=UTC)
ALL = "".join(ch for ch, _ in HOSTILE)


def _leaf(cn: str) -> CertInfo:
    return CertInfo(
        der=b"",
        sha256="ab" * 32,
        subject_cn=cn,
        subject=f"CN={cn}",
        issuer_cn=cn,
        san_dns=(cn,),
        not_before=NOW - timedelta(days=10),
        not_after=NOW + timedelta(days=10),
    )


def _view(cn: str) -> EndpointView:
    return EndpointView(
        address="127.0.0.1",
        port=443,
        sni=cn,
        status="ok",
        error=cn,
        tls_version="TLSv1.3",
        cipher="TLS_AES_128_GCM_SHA256",
        observed_at=NOW,
        scan_id=1,
        chain=(_leaf(cn),),
        findings=(
            Finding(
                kind="expiring",
                severity=Severity.HIGH,
                message=f"expires soon: {quote(cn)}",
                address="127.0.0.1",
                port=443,
                sni=cn,
            ),
        ),
    )


@pytest.mark.parametrize(("ch", "why"), HOSTILE)
def test_terminal(ch: str, why: str) -> None:
    record = EndpointRecord(
        address="127.0.0.1",
        port=443,
        sni=sample(ch),
        status="ok",
        error=None,
        tls_version="TLSv1.3",
        cipher="TLS_AES_128_GCM_SHA256",
        alpn=None,
        observed_at=NOW,
        scan_id=1,
        chain=(_leaf(sample(ch)),),
    )
    buffer = io.StringIO()
    Console(file=buffer, width=400, force_terminal=True, color_system=None).print(
        inventory_table([record])
    )
    text = buffer.getvalue()
    assert ch not in text.replace("\n", ""), why
    assert f"{ord(ch):x}" in text


@pytest.mark.parametrize(("ch", "why"), HOSTILE)
def test_finding_messages(ch: str, why: str) -> None:
    for shown in (clean(sample(ch)), quote(sample(ch))):
        assert ch not in shown, why
        assert f"{ord(ch):x}" in shown


@pytest.mark.parametrize(("ch", "why"), HOSTILE)
def test_csv_cells(ch: str, why: str) -> None:
    report = build_report([_view(sample(ch))], generated_at=NOW, scan=None)
    for kind in ("findings", "inventory"):
        data = CsvRenderer(kind=kind).render(report).decode("utf-8")
        body = data.replace("\r\n", "")  # the row separators are ours
        assert ch not in body, why


def test_html_report_shows_markers_for_every_entry() -> None:
    report = build_report([_view(sample(ALL))], generated_at=NOW, scan=None)
    page = HtmlRenderer().render(report).decode("utf-8")
    for ch, why in HOSTILE:
        if ch in "\t\n\r":  # the page's own markup has line breaks; data never reaches it raw
            continue
        assert ch not in page, why
        assert f"⟨U+{ord(ch):04X}⟩" in page, why
    assert f"⟨U+{ord(chr(9)):04X}⟩" in page


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("certscan.serve", logging.INFO, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


@pytest.mark.parametrize(("ch", "why"), HOSTILE)
def test_serve_json_and_text_logs(ch: str, why: str) -> None:
    record = _record(
        f"job failed: {sample(ch)}", job=sample(ch), port=443, urls=[sample(ch)], at={"k": ch}
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    fields = json.loads(line)
    assert ch not in fields["event"], why
    assert ch not in fields["job"], why
    assert fields["port"] == 443
    assert ch not in fields["urls"][0]
    assert fields["urls"][0].startswith("evil")
    assert ch not in fields["at"]["k"]
    text = TextFormatter().format(record)
    assert ch not in text, why
    assert "\n" not in text
