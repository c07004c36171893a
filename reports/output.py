"""The data every report renderer takes: endpoints, distinct certificates and a summary.

:func:`build_report` is pure: it takes the endpoint views the store (or a test) produced, already
filtered as the user asked, and computes what each output format shows — the certificates
deduplicated by SHA-256 with every place each one is served (in the main chain or in an
alternative chain of ``--all-certs``, :attr:`Placement.chain`), and the summary counts, which
therefore include the certificates only an alternative chain presents. Renderers
(``reports.render``) only format a :class:`Report`; they compute nothing that would make the
HTML, CSV and JSON disagree. ``generated_at`` is the one "now" of a report: days left and
"expired" are measured from it, so a report rendered twice from the same data is identical.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from reports.model import EndpointView
from scanner.models import CertInfo, Severity

__all__ = [
    "CertificateUse",
    "NextExpiry",
    "Placement",
    "Report",
    "ScanInfo",
    "Summary",
    "build_report",
    "days_left",
    "endpoint_label",
    "findings_line",
    "key_label",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanInfo:
    """The scan run a report shows. ``finished_at`` is ``None`` while the run is unfinished."""

    id: int
    started_at: datetime  # UTC
    finished_at: datetime | None  # UTC


@dataclass(frozen=True, slots=True, kw_only=True)
class Placement:
    """One place a certificate is served: an endpoint and the position in its presented chain.

    ``position`` 0 is the first certificate sent (the leaf, for a well-behaved server). ``chain``
    is 0 for the endpoint's main chain and N for its N-th alternative chain (``alt_chains[N-1]``).
    """

    address: str
    port: int
    sni: str | None
    position: int
    chain: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateUse:
    """A distinct certificate (by SHA-256) and every place it is served, in endpoint order."""

    cert: CertInfo
    served_at: tuple[Placement, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class NextExpiry:
    """The certificate that expires soonest among those not yet expired, and where it is served.

    The endpoint is the first one (in report order) that serves it.
    """

    not_after: datetime  # UTC
    days_left: int
    sha256: str
    subject_cn: str | None  # attacker-controlled text
    address: str
    port: int
    sni: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """The counts a report opens with.

    ``by_severity`` has every severity, most severe first, zeros included; ``by_kind`` has only
    the kinds present, sorted by name. ``expired`` counts distinct certificates whose
    ``not_after`` is before ``generated_at``; ``next_expiry`` is ``None`` when no certificate is
    still valid.
    """

    endpoints: int
    endpoints_with_certificates: int
    certificates: int
    expired: int
    findings: int
    by_severity: Mapping[str, int]
    by_kind: Mapping[str, int]
    next_expiry: NextExpiry | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """Everything a renderer needs. ``scan`` is ``None`` when the report shows the latest
    observation of every endpoint rather than one scan run."""

    generated_at: datetime  # UTC: the report's "now"
    scan: ScanInfo | None
    endpoints: tuple[EndpointView, ...]
    certificates: tuple[CertificateUse, ...]  # first-seen order
    summary: Summary


def days_left(not_after: datetime, now: datetime) -> int:
    """Whole days from ``now`` until ``not_after``, rounded down: negative once expired.

    A certificate expiring in 12 hours has 0 days left; one that expired an hour ago has -1.
    """
    return math.floor((not_after - now).total_seconds() / 86400)


def key_label(cert: CertInfo) -> str | None:
    """``RSA 2048``, ``EC 256``, ``Ed25519``: the key type with its size when it has one."""
    if cert.key_type is None:
        return None
    return cert.key_type if cert.key_bits is None else f"{cert.key_type} {cert.key_bits}"


def endpoint_label(address: str, port: int, sni: str | None) -> str:
    """``address:port`` (``[v6]:port``), with `` (sni)`` when a name was sent; a certificate
    file's endpoint is its ``file:/path`` alone."""
    if address.startswith("file:"):
        return address
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{port}" + (f" ({sni})" if sni else "")


def build_report(
    endpoints: Iterable[EndpointView], *, generated_at: datetime, scan: ScanInfo | None
) -> Report:
    """A :class:`Report` of ``endpoints`` (kept in the given order) as of ``generated_at``."""
    if generated_at.tzinfo is None:
        raise ValueError("generated_at must be timezone-aware (UTC)")
    views = tuple(endpoints)
    certs: dict[str, CertInfo] = {}
    places: dict[str, list[Placement]] = {}
    for view in views:
        for index, chain in enumerate((view.chain, *view.alt_chains)):
            for position, cert in enumerate(chain):
                certs.setdefault(cert.sha256, cert)
                places.setdefault(cert.sha256, []).append(
                    Placement(
                        address=view.address,
                        port=view.port,
                        sni=view.sni,
                        position=position,
                        chain=index,
                    )
                )
    uses = tuple(
        CertificateUse(cert=cert, served_at=tuple(places[sha])) for sha, cert in certs.items()
    )
    return Report(
        generated_at=generated_at,
        scan=scan,
        endpoints=views,
        certificates=uses,
        summary=_summarise(views, uses, generated_at),
    )


def _summarise(
    views: tuple[EndpointView, ...], uses: tuple[CertificateUse, ...], now: datetime
) -> Summary:
    by_severity = {s.label: 0 for s in sorted(Severity, reverse=True)}
    by_kind: dict[str, int] = {}
    findings = 0
    for view in views:
        for finding in view.findings:
            findings += 1
            by_severity[finding.severity.label] += 1
            by_kind[finding.kind] = by_kind.get(finding.kind, 0) + 1
    expired = 0
    soonest: CertificateUse | None = None
    for use in uses:
        end = use.cert.not_after
        if end is None:
            continue
        if end < now:
            expired += 1
        elif soonest is None or end < _not_after(soonest):
            soonest = use
    return Summary(
        endpoints=len(views),
        endpoints_with_certificates=sum(1 for v in views if v.chain),
        certificates=len(uses),
        expired=expired,
        findings=findings,
        by_severity=by_severity,
        by_kind=dict(sorted(by_kind.items())),
        next_expiry=None if soonest is None else _next_expiry(soonest, now),
    )


def _not_after(use: CertificateUse) -> datetime:
    assert use.cert.not_after is not None
    return use.cert.not_after


def _next_expiry(use: CertificateUse, now: datetime) -> NextExpiry:
    where = use.served_at[0]
    end = _not_after(use)
    return NextExpiry(
        not_after=end,
        days_left=days_left(end, now),
        sha256=use.cert.sha256,
        subject_cn=use.cert.subject_cn,
        address=where.address,
        port=where.port,
        sni=where.sni,
    )


@dataclass(slots=True)
class FindingsTally:
    """Counts of judged endpoints and their findings by severity, added up batch by batch, so
    that a sweep's summary and ``--fail-on`` need no view kept in memory."""

    endpoints: int = 0
    with_findings: int = 0
    by_severity: dict[Severity, int] = field(default_factory=dict)

    def add(self, views: Iterable[EndpointView]) -> None:
        for view in views:
            self.endpoints += 1
            self.with_findings += bool(view.findings)
            for finding in view.findings:
                self.by_severity[finding.severity] = self.by_severity.get(finding.severity, 0) + 1

    @property
    def worst(self) -> Severity | None:
        """The most severe finding's severity (None: no finding)."""
        return max(self.by_severity, default=None)

    def line(self) -> str:
        """``12 findings on 5 of 9 endpoints: 2 critical, 7 high, 3 low`` (zero counts left
        out)."""
        total = sum(self.by_severity.values())
        parts = [
            f"{self.by_severity[s]} {s.label}"
            for s in sorted(Severity, reverse=True)
            if self.by_severity.get(s)
        ]
        head = (
            f"{total} finding{'' if total == 1 else 's'} on {self.with_findings} of "
            f"{self.endpoints} endpoints"
        )
        return head + (": " + ", ".join(parts) if parts else "")


def findings_line(views: Sequence[EndpointView]) -> str:
    """``12 findings on 5 of 9 endpoints: 2 critical, 7 high, 3 low`` (zero counts left out)."""
    tally = FindingsTally()
    tally.add(views)
    return tally.line()
