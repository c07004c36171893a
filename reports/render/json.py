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
from importlib import resources
from typing import Any, ClassVar

from reports.model import EndpointView
from reports.output import CertificateUse, Report, ScanInfo, Summary
from reports.render.interface import Renderer
from scanner.models import Finding
from scanner.serialize import cert_to_dict, iso, observed_dict

__all__ = ["JsonRenderer", "load_schema", "report_to_dict"]


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
