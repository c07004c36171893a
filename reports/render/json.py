"""The JSON report, as documented by ``reports/schema/report.schema.json`` (JSON Schema 2020-12).

Shape::

    {"generated_at": "...Z",
     "scan": {"id", "started_at", "finished_at"} | null,  # null: latest of each endpoint
     "endpoints": [{"address", "port", "sni", "status", "error", "tls_version", "cipher",
                    "observed_at", "scan_id",
                    "chain": [certificate objects exactly as ``sweep --json`` prints them],
                    "alt_chains": [[certificate objects], ...],  # --all-certs; [] when none
                    "automation": "automated" | ... | null, "lead_days": [30.0, ...],
                    "findings": [{"kind", "severity", "message", "sha256"}],
                    "legacy_capture", "group"}],  # optional; null when not recorded
     "certificates": [certificate object + {"served_at": [{"address", "port", "sni", "position",
                                                           "chain"}]}],  # chain: 0 main, N alt
     "summary": {"endpoints", "endpoints_with_certificates", "certificates", "expired",
                 "findings", "by_severity": {severity: n}, "by_kind": {kind: n},
                 "next_expiry": {"not_after", "days_left", "sha256", "subject_cn",
                                 "address", "port", "sni"} | null}}

Certificate objects come from ``scanner.serialize.cert_to_dict`` so a report and ``sweep --json``
never disagree. The output is one line of ASCII JSON (non-ASCII escaped, so no raw control or
bidi characters reach a terminal when it is written to stdout) followed by a newline.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable
from datetime import datetime
from importlib import resources
from typing import Any, BinaryIO, ClassVar

from reports.model import EndpointView
from reports.output import CertificateUse, NextExpiry, Report, ScanInfo, Summary, days_left
from reports.render.interface import Renderer
from scanner.models import CertInfo, Finding, Severity
from scanner.serialize import cert_to_dict, iso, observed_dict

__all__ = ["JsonRenderer", "load_schema", "report_to_dict", "write_json"]


class JsonRenderer(Renderer):
    """The machine-readable report for CI jobs and other tools."""

    format_name: ClassVar[str] = "json"
    media_type: ClassVar[str] = "application/json"
    extension: ClassVar[str] = "json"

    def render(self, report: Report) -> bytes:
        text = json.dumps(report_to_dict(report), ensure_ascii=True, separators=(",", ":"))
        return (text + "\n").encode("ascii")


@functools.cache
def _schema_text() -> str:
    return resources.files("reports").joinpath("schema/report.schema.json").read_text("utf-8")


def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) this renderer's output follows, as a fresh dict."""
    schema: dict[str, Any] = json.loads(_schema_text())
    return schema


def report_to_dict(report: Report) -> dict[str, Any]:
    """The report as plain JSON-ready data."""
    return {
        "generated_at": iso(report.generated_at),
        "scan": _scan(report.scan),
        "endpoints": [_endpoint(view) for view in report.endpoints],
        "certificates": [_certificate(use) for use in report.certificates],
        "summary": _summary(report.summary),
    }


def _scan(scan: ScanInfo | None) -> dict[str, Any] | None:
    if scan is None:
        return None
    return {
        "id": scan.id,
        "started_at": iso(scan.started_at),
        "finished_at": iso(scan.finished_at),
    }


def _endpoint(view: EndpointView) -> dict[str, Any]:
    data = observed_dict(view)
    data["observed_at"] = iso(view.observed_at)
    data["scan_id"] = view.scan_id
    data["alt_chains"] = [[cert_to_dict(c) for c in alt] for alt in view.alt_chains]
    data["automation"] = view.automation
    data["lead_days"] = list(view.lead_days)
    data["findings"] = [_finding(f) for f in view.findings]
    data["legacy_capture"] = view.legacy_capture
    data["group"] = view.group
    return data


def _finding(finding: Finding) -> dict[str, Any]:
    return {
        "kind": finding.kind,
        "severity": finding.severity.label,
        "message": finding.message,
        "sha256": finding.sha256,
    }


def _certificate(use: CertificateUse) -> dict[str, Any]:
    data = cert_to_dict(use.cert)
    data["served_at"] = [
        {
            "address": p.address,
            "port": p.port,
            "sni": p.sni,
            "position": p.position,
            "chain": p.chain,
        }
        for p in use.served_at
    ]
    return data


def _summary(summary: Summary) -> dict[str, Any]:
    nxt = summary.next_expiry
    return {
        "endpoints": summary.endpoints,
        "endpoints_with_certificates": summary.endpoints_with_certificates,
        "certificates": summary.certificates,
        "expired": summary.expired,
        "findings": summary.findings,
        "by_severity": dict(summary.by_severity),
        "by_kind": dict(summary.by_kind),
        "next_expiry": None
        if nxt is None
        else {
            "not_after": iso(nxt.not_after),
            "days_left": nxt.days_left,
            "sha256": nxt.sha256,
            "subject_cn": nxt.subject_cn,
            "address": nxt.address,
            "port": nxt.port,
            "sni": nxt.sni,
        },
    }


def write_json(
    batches: Iterable[Iterable[EndpointView]],
    out: BinaryIO,
    *,
    generated_at: datetime,
    scan: ScanInfo | None,
) -> None:
    """The same document as :class:`JsonRenderer` (same keys, same order), written to ``out``
    as the endpoint views arrive, a batch at a time.

    Bounded memory: the endpoints are written as they come; each distinct certificate is kept,
    once serialised, with its placements in a temporary SQLite file (not in memory), and the
    ``certificates`` section is written from it at the end, in first-seen order; the summary
    is counted as the views pass."""
    with tempfile.TemporaryDirectory(prefix="certscan-report-") as scratch:
        db = sqlite3.connect(os.path.join(scratch, "certs.db"))
        try:
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("PRAGMA synchronous=OFF")
            db.execute("CREATE TABLE cert (ord INTEGER PRIMARY KEY, sha TEXT UNIQUE, body TEXT)")
            db.execute("CREATE TABLE place (ord INTEGER, body TEXT)")
            head = {"generated_at": iso(generated_at), "scan": _scan(scan)}
            out.write(_dumps(head)[:-1].encode("ascii") + b',"endpoints":[')
            counts = _Counts(generated_at)
            first = True
            for views in batches:
                chunk = list(views)
                if not chunk:
                    continue
                text = ",".join(_dumps(_endpoint(v)) for v in chunk)
                out.write((text if first else "," + text).encode("ascii"))
                first = False
                counts.add(chunk, db)
            out.write(b'],"certificates":[')
            db.execute("CREATE INDEX place_ord ON place (ord)")
            rows = db.execute(
                "SELECT c.ord, c.body, p.body FROM cert c JOIN place p ON p.ord = c.ord"
                " ORDER BY c.ord, p.rowid"
            )
            current: int | None = None
            for ord_, body, place in rows:
                if ord_ != current:
                    prefix = "" if current is None else "]},"
                    out.write((prefix + body[:-1] + ',"served_at":[' + place).encode("ascii"))
                    current = ord_
                else:
                    out.write(("," + place).encode("ascii"))
            if current is not None:
                out.write(b"]}")
            out.write(b'],"summary":' + _dumps(_summary(counts.summary())).encode("ascii"))
            out.write(b"}\n")
        finally:
            db.close()


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=True, separators=(",", ":"))


class _Counts:
    """The summary of the views written so far, and the certificates' placements (in ``db``)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.endpoints = 0
        self.with_certs = 0
        self.certificates = 0
        self.expired = 0
        self.findings = 0
        self.by_severity = {s.label: 0 for s in sorted(Severity, reverse=True)}
        self.by_kind: dict[str, int] = {}
        self.soonest: NextExpiry | None = None

    def add(self, views: list[EndpointView], db: sqlite3.Connection) -> None:
        places: list[tuple[str, int, str | None, int, int, CertInfo]] = []
        for view in views:
            self.endpoints += 1
            self.with_certs += bool(view.chain)
            for finding in view.findings:
                self.findings += 1
                self.by_severity[finding.severity.label] += 1
                self.by_kind[finding.kind] = self.by_kind.get(finding.kind, 0) + 1
            for index, chain in enumerate((view.chain, *view.alt_chains)):
                for position, cert in enumerate(chain):
                    places.append((view.address, view.port, view.sni, position, index, cert))
        known: dict[str, int] = {}
        shas = list(dict.fromkeys(p[5].sha256 for p in places))
        for start in range(0, len(shas), 500):
            part = shas[start : start + 500]
            marks = ",".join("?" * len(part))
            query = f"SELECT sha, ord FROM cert WHERE sha IN ({marks})"  # noqa: S608 (only ?s)
            known.update(db.execute(query, part))
        rows: list[tuple[int, str]] = []
        for address, port, sni, position, index, cert in places:
            ord_ = known.get(cert.sha256)
            if ord_ is None:
                ord_ = self._first_seen(cert, address, port, sni, db)
                known[cert.sha256] = ord_
            where = {
                "address": address,
                "port": port,
                "sni": sni,
                "position": position,
                "chain": index,
            }
            rows.append((ord_, _dumps(where)))
        db.executemany("INSERT INTO place (ord, body) VALUES (?, ?)", rows)

    def _first_seen(
        self, cert: CertInfo, address: str, port: int, sni: str | None, db: sqlite3.Connection
    ) -> int:
        self.certificates += 1
        end = cert.not_after
        if end is not None:
            if end < self.now:
                self.expired += 1
            elif self.soonest is None or end < self.soonest.not_after:
                self.soonest = NextExpiry(
                    not_after=end,
                    days_left=days_left(end, self.now),
                    sha256=cert.sha256,
                    subject_cn=cert.subject_cn,
                    address=address,
                    port=port,
                    sni=sni,
                )
        db.execute(
            "INSERT INTO cert (ord, sha, body) VALUES (?, ?, ?)",
            (self.certificates, cert.sha256, _dumps(cert_to_dict(cert))),
        )
        return self.certificates

    def summary(self) -> Summary:
        return Summary(
            endpoints=self.endpoints,
            endpoints_with_certificates=self.with_certs,
            certificates=self.certificates,
            expired=self.expired,
            findings=self.findings,
            by_severity=self.by_severity,
            by_kind=dict(sorted(self.by_kind.items())),
            next_expiry=self.soonest,
        )
