"""SARIF 2.1.0: findings as code-scanning results, for CI systems that show them natively.

One ``run`` whose tool driver is certscan, with one ``rule`` per finding kind that occurs (id =
the kind) and one ``result`` per finding. Certificates live on network endpoints, not in files,
so each result's location is a logical location (``address:port (sni)``, kind ``resource``) and
an artifact URI ``tls://address:port/`` (with ``?sni=NAME``), which code-scanning viewers need
to group results. Severities map to SARIF levels: critical and high are ``error``, medium is
``warning``, low and info are ``note``; the certscan severity itself is kept in ``properties``
(and as GitHub's ``security-severity`` score). ``partialFingerprints`` identify a finding across
runs by kind, endpoint and certificate, so a viewer tracks it instead of showing it as new.

Text from certificates and servers (messages, names) has every code point
:func:`scanner.text.hostile` names escaped; JSON escaping is the encoder's. The output follows
the published schema (``reports/schema/sarif/``), which the tests validate it against. Pure.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar
from urllib.parse import quote

import scanner
from reports.model import EndpointView
from reports.output import Report, endpoint_label
from reports.render.interface import Renderer
from scanner.models import Finding, Severity
from scanner.serialize import iso
from scanner.text import escape

__all__ = ["KIND_TITLES", "SARIF_SCHEMA_URI", "SarifRenderer", "report_to_sarif"]

SARIF_SCHEMA_URI = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)

#: One line per finding kind: the rule's short description.
KIND_TITLES: dict[str, str] = {
    "unparsable_certificate": "A presented certificate cannot be parsed",
    "expired": "Certificate expired",
    "expiring": "Certificate expires soon",
    "not_yet_valid": "Certificate not yet valid",
    "self_signed": "Self-signed leaf certificate",
    "untrusted_root": "Chain ends at an untrusted root",
    "incomplete_chain": "Chain is incomplete (issuer not sent)",
    "chain_order": "Chain certificates out of order",
    "extra_certificate": "Certificate sent that is not on the path",
    "weak_key": "Key too small",
    "weak_signature": "Weak signature hash",
    "long_validity": "Validity longer than the CA/Browser Forum limit",
    "no_san": "Leaf has no subject alternative name",
    "hostname_mismatch": "Certificate does not cover the name",
    "key_reuse": "Leaf key served with other certificates",
    "legacy_protocol": "Legacy TLS protocol accepted",
    "weak_cipher": "Weak cipher suite negotiated",
    "certificate_changed": "Leaf certificate changed since the previous scan",
}

_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}
#: GitHub code scanning's ``security-severity`` (a CVSS-like score) per certscan severity.
_SCORE = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "0.0",
}


class SarifRenderer(Renderer):
    """SARIF 2.1.0 (``certscan report --format sarif``)."""

    format_name: ClassVar[str] = "sarif"
    media_type: ClassVar[str] = "application/sarif+json"
    extension: ClassVar[str] = "sarif"

    def render(self, report: Report) -> bytes:
        text = json.dumps(report_to_sarif(report), ensure_ascii=True, indent=1)
        return (text + "\n").encode("ascii")


def _uri(view: EndpointView) -> str:
    address = escape(view.address)
    host = f"[{address}]" if ":" in address else address
    uri = f"tls://{quote(host, safe='[]:')}:{view.port}/"
    return uri + (f"?sni={quote(escape(view.sni), safe='')}" if view.sni else "")


def _fingerprint(view: EndpointView, finding: Finding) -> str:
    key = "\0".join(
        (finding.kind, view.address, str(view.port), view.sni or "", finding.sha256 or "")
    )
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _result(view: EndpointView, finding: Finding, rule_index: int) -> dict[str, Any]:
    label = escape(endpoint_label(view.address, view.port, view.sni))
    properties: dict[str, Any] = {
        "severity": finding.severity.label,
        "address": escape(view.address),
        "port": view.port,
        "sni": None if view.sni is None else escape(view.sni),
    }
    if finding.sha256:
        properties["sha256"] = finding.sha256
    return {
        "ruleId": finding.kind,
        "ruleIndex": rule_index,
        "level": _LEVEL[finding.severity],
        "message": {"text": f"{label}: {escape(finding.message)}"},
        "locations": [
            {
                "physicalLocation": {"artifactLocation": {"uri": _uri(view)}},
                "logicalLocations": [{"name": label, "kind": "resource"}],
            }
        ],
        "partialFingerprints": {"certscanFinding/v1": _fingerprint(view, finding)},
        "properties": properties,
    }


def report_to_sarif(report: Report) -> dict[str, Any]:
    """The SARIF log of ``report`` as plain JSON data (module docstring)."""
    pairs = [(view, f) for view in report.endpoints for f in view.findings]
    kinds = sorted({f.kind for _, f in pairs})
    index = {kind: i for i, kind in enumerate(kinds)}
    worst: dict[str, Severity] = {}
    for _, f in pairs:
        if f.kind not in worst or f.severity > worst[f.kind]:
            worst[f.kind] = f.severity
    rules = [
        {
            "id": kind,
            "name": kind,
            "shortDescription": {"text": KIND_TITLES.get(kind, kind)},
            "defaultConfiguration": {"level": _LEVEL[worst[kind]]},
            "properties": {"security-severity": _SCORE[worst[kind]], "tags": ["security", "tls"]},
        }
        for kind in kinds
    ]
    return {
        "$schema": SARIF_SCHEMA_URI,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "certscan",
                        "version": scanner.__version__,
                        "semanticVersion": scanner.__version__,
                        "rules": rules,
                    }
                },
                "invocations": [
                    {"executionSuccessful": True, "endTimeUtc": iso(report.generated_at)}
                ],
                "results": [_result(view, f, index[f.kind]) for view, f in pairs],
                "properties": {
                    "endpoints": len(report.endpoints),
                    "scan_id": None if report.scan is None else report.scan.id,
                },
            }
        ],
    }
