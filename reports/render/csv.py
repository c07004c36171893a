"""CSV reports: one row per endpoint x finding, or one row per endpoint (``inventory``).

Columns are stable and listed in :data:`FINDINGS_COLUMNS` and :data:`INVENTORY_COLUMNS`; new
columns are only ever appended. The file is UTF-8 without a byte-order mark, with a header row,
CRLF line endings and RFC 4180 quoting (the ``csv`` module's ``excel`` dialect, minimal quoting).

``findings`` rows (:data:`FINDINGS_COLUMNS`):
    ``address``, ``port``, ``sni``, ``status`` name the endpoint; ``subject_cn``, ``not_after``
    and ``days_left`` describe its leaf (the first certificate it presented; empty without a
    chain) -- for a finding about a certificate of an alternative chain (``--all-certs``), the
    leaf of that chain; ``severity``, ``kind``, ``message`` and ``sha256`` are the finding,
    ``sha256`` naming the certificate it concerns (empty for endpoint-wide findings such as
    ``weak_cipher``). An endpoint without findings still has one row, its finding cells empty.

``inventory`` rows (:data:`INVENTORY_COLUMNS`):
    the endpoint, its ``status`` and ``error``, and its leaf: ``subject_cn``, ``issuer_cn``,
    ``not_after``, ``days_left``, ``key`` (``RSA 2048``, ``EC 256``...), ``signature_hash``,
    ``sha256``; ``findings`` is the number of findings on the endpoint; ``chain`` is ``0``;
    then ``tls_version``, ``cipher``, ``group`` (the key exchange group) and ``legacy_capture``
    (``true`` when the chain was read from a hand-built legacy hello's records; empty when not
    recorded).

    Alternative chains (``certscan sweep --all-certs``: a server holding an RSA and an ECDSA
    certificate) get **one extra row each**, right after the endpoint's row, with the same
    endpoint cells, the leaf cells of that chain, ``chain`` = N for the N-th alternative chain,
    and ``findings`` left empty (the endpoint's count is on its ``chain`` 0 row, so a column sum
    stays right). Extra rows rather than ``alt_*`` columns keep every leaf in the same, sortable
    columns, and an endpoint may hold more than two certificates.

Hostile text: in every *text* cell, each code point :func:`scanner.text.hostile` names (control
characters including line breaks and tabs, bidi overrides such as U+202E, invisible format
characters) is written as a ``\\xNN`` / ``\\uNNNN`` escape, so a cell can neither reorder what
a spreadsheet shows nor hide part of a name.

Spreadsheet formula injection: every *text* cell whose first character is ``=``, ``+``, ``-``,
``@``, tab or carriage return (after escaping, only the first four remain) gets a leading ``'``
so a spreadsheet shows it as text. Text comes
from certificates and servers and is attacker-controlled. Numeric cells (``port``, ``days_left``,
``findings``) are integers certscan computes; they are written as plain numbers and never
prefixed, so ``days_left`` stays ``-12`` (numeric, sortable) for a certificate expired 12 days ago.
Times are ISO 8601 UTC with a ``Z``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import BinaryIO, ClassVar

from reports.model import EndpointView
from reports.output import Report, days_left, key_label
from reports.render.interface import CsvKind, Renderer
from scanner.serialize import iso
from scanner.text import escape

__all__ = ["FINDINGS_COLUMNS", "INVENTORY_COLUMNS", "CsvRenderer", "neutralise"]

FINDINGS_COLUMNS: tuple[str, ...] = (
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

INVENTORY_COLUMNS: tuple[str, ...] = (
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
    "chain",
    "tls_version",
    "cipher",
    "group",
    "legacy_capture",
)

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

Cell = str | int | None


def neutralise(text: str) -> str:
    """``text`` with a leading ``'`` when a spreadsheet would read it as a formula."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _cell(value: Cell) -> str | int:
    if value is None:
        return ""
    if isinstance(value, int):
        return value
    return neutralise(escape(value))


class CsvRenderer(Renderer):
    """CSV of findings (one row per endpoint x finding) or of the inventory (one per endpoint)."""

    format_name: ClassVar[str] = "csv"
    media_type: ClassVar[str] = "text/csv; charset=utf-8; header=present"
    extension: ClassVar[str] = "csv"

    def __init__(self, *, kind: CsvKind = "findings") -> None:
        self.kind: CsvKind = kind

    @property
    def columns(self) -> tuple[str, ...]:
        return FINDINGS_COLUMNS if self.kind == "findings" else INVENTORY_COLUMNS

    def render(self, report: Report) -> bytes:
        out = io.BytesIO()
        self.write([report.endpoints], out, generated_at=report.generated_at)
        return out.getvalue()

    def write(
        self, batches: Iterable[Iterable[EndpointView]], out: BinaryIO, *, generated_at: datetime
    ) -> None:
        """The same bytes as :meth:`render`, written to ``out`` a batch of views at a time."""
        rows_of = _finding_rows if self.kind == "findings" else _inventory_rows
        text = io.StringIO(newline="")
        writer = csv.writer(text, dialect="excel", lineterminator="\r\n")
        writer.writerow(self.columns)
        for views in batches:
            writer.writerows(
                [_cell(value) for value in row] for row in rows_of(views, generated_at)
            )
            out.write(text.getvalue().encode("utf-8"))
            text.seek(0)
            text.truncate()
        out.write(text.getvalue().encode("utf-8"))


def _leaf_cells(
    view: EndpointView, now: datetime, sha256: str | None = None
) -> tuple[Cell, Cell, Cell]:
    """subject_cn, not_after, days_left of the leaf of the endpoint's first chain holding
    certificate ``sha256`` (the main chain when none does, or ``sha256`` is ``None``)."""
    chain = view.chain
    if sha256 is not None and not any(c.sha256 == sha256 for c in chain):
        holding = [alt for alt in view.alt_chains if any(c.sha256 == sha256 for c in alt)]
        chain = holding[0] if holding else chain
    if not chain:
        return None, None, None
    leaf = chain[0]
    end = leaf.not_after
    left = None if end is None else days_left(end, now)
    return leaf.subject_cn, iso(end), left


def _finding_rows(views: Iterable[EndpointView], now: datetime) -> Iterator[Sequence[Cell]]:
    for view in views:
        head: tuple[Cell, ...] = (view.address, view.port, view.sni, view.status)
        leaf = _leaf_cells(view, now)
        if not view.findings:
            yield (*head, *leaf, None, None, None, None)
        for finding in view.findings:
            yield (
                *head,
                *(_leaf_cells(view, now, finding.sha256) if view.alt_chains else leaf),
                finding.severity.label,
                finding.kind,
                finding.message,
                finding.sha256,
            )


def _inventory_rows(views: Iterable[EndpointView], now: datetime) -> Iterator[Sequence[Cell]]:
    for view in views:
        head: tuple[Cell, ...] = (view.address, view.port, view.sni, view.status, view.error)
        count = len(view.findings)
        legacy = None if view.legacy_capture is None else str(view.legacy_capture).lower()
        tail: tuple[Cell, ...] = (view.tls_version, view.cipher, view.group, legacy)
        if not view.chain:
            yield (*head, None, None, None, None, None, None, None, count, 0, *tail)
            continue
        for index, chain in enumerate((view.chain, *view.alt_chains)):
            if not chain:
                continue
            leaf = chain[0]
            end = leaf.not_after
            yield (
                *head,
                leaf.subject_cn,
                leaf.issuer_cn,
                iso(end),
                None if end is None else days_left(end, now),
                key_label(leaf),
                leaf.signature_hash,
                leaf.sha256,
                None if index else count,
                index,
                *tail,
            )
