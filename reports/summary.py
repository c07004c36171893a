"""The estate at a glance: endpoints and certificates by owner, issuer, key type, TLS version,
key-exchange group and lifetime, the share that looks automated, and a trend over the last
scans. Pure.

Theory of operation
-------------------
:func:`estate` takes the judged views a report shows (the latest observation of every endpoint)
and the newest scan runs, and counts. An endpoint counts once per dimension, by its main leaf;
certificates are distinct leaves (by SHA-256). Issuers are grouped by organisation (``O=``),
else by common name. Lifetime buckets follow the CA/Browser Forum schedule (at most 47, 100,
200 and 398 days) plus "longer". "Automated" is :mod:`reports.renewal`'s verdict, over the
endpoints whose history shows at least two renewals (the others cannot tell). The key-exchange
group is the one the handshake negotiated (``x25519``, ``X25519MLKEM768``...); observations
stored before the engine recorded it, and handshakes without one, count as "not recorded",
certificate files as "file". The trend lists, per scan,
targets done, endpoints that presented a chain, and failures, oldest first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from reports.model import EndpointView
from reports.output import key_label
from scanner.inventory.read import ScanRun
from scanner.models import CertInfo

__all__ = ["Estate", "Group", "TrendPoint", "estate", "estate_dict", "lifetime_bucket"]

BUCKETS: tuple[tuple[int, str], ...] = (
    (47, "≤ 47 days"),
    (100, "≤ 100 days"),
    (200, "≤ 200 days"),
    (398, "≤ 398 days"),
)
UNOWNED = "(unowned)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Group:
    """One value of a dimension: how many endpoints and distinct certificates have it."""

    label: str
    endpoints: int
    certificates: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TrendPoint:
    scan_id: int
    started_at: datetime
    done: int
    ok: int
    failed: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Estate:
    """The counts. ``automated`` of ``judged`` endpoints look automated (``judged``: those
    with at least two renewals seen)."""

    endpoints: int
    with_certificates: int
    certificates: int
    by_owner: tuple[Group, ...]
    by_issuer: tuple[Group, ...]
    by_key_type: tuple[Group, ...]
    by_tls_version: tuple[Group, ...]
    by_key_exchange: tuple[Group, ...]
    by_lifetime: tuple[Group, ...]
    automated: int
    judged: int
    trend: tuple[TrendPoint, ...]

    @property
    def automated_share(self) -> float | None:
        return None if not self.judged else self.automated / self.judged

    def dimensions(self) -> tuple[tuple[str, tuple[Group, ...]], ...]:
        return (
            ("owner", self.by_owner),
            ("issuer", self.by_issuer),
            ("key type", self.by_key_type),
            ("TLS version", self.by_tls_version),
            ("key exchange", self.by_key_exchange),
            ("lifetime", self.by_lifetime),
        )


def lifetime_bucket(cert: CertInfo) -> str:
    if cert.not_before is None or cert.not_after is None:
        return "unknown"
    lifetime = cert.not_after - cert.not_before
    for days, label in BUCKETS:
        if lifetime <= timedelta(days=days):
            return label
    return "longer"


def _issuer(cert: CertInfo) -> str:
    return cert.issuer_o or cert.issuer_cn or cert.issuer or "unknown"


def _groups(
    pairs: Iterable[tuple[str, str | None]], order: Sequence[str] = ()
) -> tuple[Group, ...]:
    endpoints: Counter[str] = Counter()
    certs: dict[str, set[str]] = {}
    for label, sha256 in pairs:
        endpoints[label] += 1
        if sha256 is not None:
            certs.setdefault(label, set()).add(sha256)
    rank = {label: n for n, label in enumerate(order)}
    labels = sorted(endpoints, key=lambda k: (rank.get(k, len(rank)), -endpoints[k], k))
    return tuple(
        Group(label=k, endpoints=endpoints[k], certificates=len(certs.get(k, ()))) for k in labels
    )


def estate(views: Sequence[EndpointView], scans: Sequence[ScanRun] = ()) -> Estate:
    """Count ``views`` (and ``scans``, newest first as the inventory lists them)."""
    with_leaf = [(v, v.chain[0]) for v in views if v.chain and v.chain[0].error is None]
    judged = [v for v in views if len(v.lead_days) >= 2]
    return Estate(
        endpoints=len(views),
        with_certificates=sum(1 for v in views if v.chain),
        certificates=len({v.chain[0].sha256 for v in views if v.chain}),
        by_owner=_groups(
            (v.owner or UNOWNED, v.chain[0].sha256 if v.chain else None) for v in views
        ),
        by_issuer=_groups((_issuer(c), c.sha256) for _, c in with_leaf),
        by_key_type=_groups((key_label(c) or "unknown", c.sha256) for _, c in with_leaf),
        by_tls_version=_groups(
            (
                v.tls_version or ("file" if v.address.startswith("file:") else "none"),
                v.chain[0].sha256,
            )
            for v in views
            if v.chain
        ),
        by_key_exchange=_groups(
            (
                v.group or ("file" if v.address.startswith("file:") else "not recorded"),
                v.chain[0].sha256,
            )
            for v in views
            if v.chain
        ),
        by_lifetime=_groups(
            ((lifetime_bucket(c), c.sha256) for _, c in with_leaf),
            order=[label for _, label in BUCKETS] + ["longer", "unknown"],
        ),
        automated=sum(1 for v in judged if v.automation == "automated"),
        judged=len(judged),
        trend=tuple(
            TrendPoint(scan_id=r.id, started_at=r.started_at, done=r.done, ok=r.ok, failed=r.failed)
            for r in reversed(scans)
        ),
    )


def estate_dict(found: Estate) -> dict[str, object]:
    """The JSON form (``certscan summary --json``, ``/api/v1/summary``)."""

    def groups(items: tuple[Group, ...]) -> list[dict[str, object]]:
        return [
            {"label": g.label, "endpoints": g.endpoints, "certificates": g.certificates}
            for g in items
        ]

    return {
        "endpoints": found.endpoints,
        "endpoints_with_certificates": found.with_certificates,
        "certificates": found.certificates,
        "by_owner": groups(found.by_owner),
        "by_issuer": groups(found.by_issuer),
        "by_key_type": groups(found.by_key_type),
        "by_tls_version": groups(found.by_tls_version),
        "by_key_exchange": groups(found.by_key_exchange),
        "by_lifetime": groups(found.by_lifetime),
        "automated": found.automated,
        "renewals_judged": found.judged,
        "automated_share": found.automated_share,
        "trend": [
            {
                "scan_id": p.scan_id,
                "started_at": p.started_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "done": p.done,
                "ok": p.ok,
                "failed": p.failed,
            }
            for p in found.trend
        ],
    }
