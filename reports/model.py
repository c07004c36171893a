"""Findings and the data a report is rendered from. Plain frozen data, no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from scanner.models import CertInfo


class Severity(enum.IntEnum):
    """Ordered severities; compare with ``>=`` for ``--fail-on``. Names are the public strings."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r} (expected one of {names})") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One thing wrong (or worth knowing) about an endpoint or one of its certificates.

    ``kind`` is stable and machine-readable (``expired``, ``weak_key``...); ``message`` is one line
    for a person, with the evidence. ``sha256`` names the certificate concerned, ``None`` when the
    finding is about the endpoint as a whole (``legacy_protocol``, ``weak_cipher``).
    """

    kind: str
    severity: Severity
    message: str
    address: str
    port: int
    sni: str | None
    sha256: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointView:
    """An endpoint as a report shows it: its latest observation, chain and findings.

    ``alt_chains`` are the other chains the endpoint presented (``--all-certs``: a server holding
    an RSA and an ECDSA certificate), each leaf first; the findings cover them too.
    """

    address: str
    port: int
    sni: str | None
    status: str
    error: str | None
    tls_version: str | None
    cipher: str | None
    observed_at: datetime | None
    scan_id: int | None
    chain: tuple[CertInfo, ...]
    findings: tuple[Finding, ...]
    alt_chains: tuple[tuple[CertInfo, ...], ...] = ()
    #: The chain came from a legacy capture (``Handshake.legacy_capture``); the key exchange
    #: group. None for failures and observations stored before they were recorded.
    legacy_capture: bool | None = None
    group: str | None = None
