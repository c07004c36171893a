"""What reaches a terminal: control characters escaped, no markup applied, lengths bounded."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from scanner.cli.console import days_left, inventory_table
from scanner.inventory.store import EndpointRecord
from scanner.lab import certgen
from scanner.parse import parse_certificate
from scanner.text import safe


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain.example", "plain.example"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("evil\u202etxt.exe", "evil\\u202etxt.exe"),
        ("line\nbreak\r", "line\\x0abreak\\x0d"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("bücher.example", "bücher.example"),
        (None, ""),
    ],
)
def test_safe_escapes_control_and_format_characters(raw: str | None, shown: str) -> None:
    assert safe(raw) == shown


def test_safe_bounds_length() -> None:
    assert len(safe("x" * 10_000, 80)) == 80
    assert safe("x" * 10_000, 80).endswith("…")


def test_days_left_counts_whole_days() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert days_left(now + timedelta(days=3, hours=5), now) == 3
    assert days_left(now - timedelta(hours=1), now) == -1
    assert days_left(None, now) is None


def test_hostile_certificate_text_prints_literally_in_the_inventory_table() -> None:
    cn = "[bold]p[/bold]\x1b]0;t\x07"
    leaf = certgen.make_leaf(None, cn=cn, dns_names=("x.example",))
    record = EndpointRecord(
        address="127.0.0.1",
        port=443,
        sni=None,
        status="ok",
        error=None,
        tls_version="TLSv1.3",
        cipher="TLS_AES_128_GCM_SHA256",
        alpn=None,
        observed_at=datetime.now(UTC),
        scan_id=1,
        chain=(parse_certificate(leaf.der),),
    )
    buffer = io.StringIO()
    Console(file=buffer, width=300, force_terminal=True, color_system=None).print(
        inventory_table([record])
    )
    text = buffer.getvalue()
    assert "[bold]p[/bold]" in text  # shown as text, not applied as markup
    assert "\x1b]0;" not in text  # no escape sequence reaches the terminal
    assert "\x07" not in text
    assert "\\x1b]0;t\\x07" in text
