"""Renewal behaviour from the stored history: lead times, late renewals, missing successors,
and whether an endpoint looks automated. Pure functions over leaf runs
(:class:`scanner.inventory.history.LeafRun`, oldest first).

Theory of operation
-------------------
A *renewal* is a run whose leaf was never seen on the endpoint before and ends later than every
leaf seen before it; the certificate it renews is the one that ended latest so far (so a stale
certificate coming back, then the fresh one again, counts one renewal, not three). Its *lead
time* is how long before the renewed certificate's ``not_after`` the new leaf was first seen:
negative when the endpoint kept serving an expired certificate. Scans are discrete, so a lead
time is a lower bound: the new leaf may have been deployed up to one scan interval earlier.

* ``renews_late`` (medium): the last two renewals were both first seen inside the policy's
  critical window of the certificate they renewed (the ``expiring`` critical window, scaled for
  short-lived certificates) or after it expired. One late renewal is an event, two are a habit:
  a certificate replaced once after it expired does not make this finding.
* ``renewal_not_observed`` (medium): earlier certificates were renewed, the current one has
  reached the last third of its lifetime, it has less time left than the shortest lead time
  seen so far (it is past the point where this endpoint used to renew), and no successor has
  been seen. An expired one is left to ``expired``.
* :func:`automation`: ``automated`` when at least two renewals all came ahead of expiry with
  lead times within two days or a quarter of their median of each other; ``irregular`` when
  they did not; ``one renewal`` and ``no renewal seen`` otherwise. With lifetimes falling to 47
  days, the irregular and late ones are the endpoints that will break first.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from reports.expiry import expiry_severity
from reports.model import Proposal
from reports.names import quote
from reports.policy import Policy
from scanner.inventory.history import LeafRun
from scanner.models import CertInfo, Severity

__all__ = [
    "Automation",
    "Renewal",
    "automation",
    "renewal_not_observed",
    "renewals",
    "renews_late",
]

_DAY = timedelta(days=1)
_LATE_RUN = 2  # renewals looked at by renews_late


@dataclass(frozen=True, slots=True, kw_only=True)
class Renewal:
    """``new`` first seen at ``seen_at``, replacing ``old``."""

    old: CertInfo
    new: CertInfo
    seen_at: datetime

    @property
    def lead(self) -> timedelta:
        """How long before ``old`` expired the new leaf was first seen (negative: after)."""
        assert self.old.not_after is not None
        return self.old.not_after - self.seen_at


@dataclass(frozen=True, slots=True, kw_only=True)
class Automation:
    """How an endpoint renews: ``label`` is ``automated``, ``irregular``, ``one renewal`` or
    ``no renewal seen``; ``lead_days`` are the lead times of its renewals, oldest first."""

    label: str
    lead_days: tuple[float, ...]

    @property
    def automated(self) -> bool:
        return self.label == "automated"


def _dated(cert: CertInfo) -> bool:
    return cert.error is None and cert.not_before is not None and cert.not_after is not None


def renewals(runs: Sequence[LeafRun]) -> tuple[Renewal, ...]:
    """The renewals in ``runs`` (module docstring), oldest first."""
    seen: set[str] = set()
    newest: CertInfo | None = None
    out: list[Renewal] = []
    for run in runs:
        leaf = run.leaf
        fresh = leaf.sha256 not in seen
        seen.add(leaf.sha256)
        if not _dated(leaf):
            continue
        assert leaf.not_after is not None
        if newest is None:
            newest = leaf
            continue
        assert newest.not_after is not None
        if fresh and leaf.not_after > newest.not_after:
            out.append(Renewal(old=newest, new=leaf, seen_at=run.first_seen))
            newest = leaf
    return tuple(out)


def _days(delta: timedelta) -> float:
    return round(delta / _DAY, 1)


def automation(found: Sequence[Renewal]) -> Automation:
    """Whether the renewals look automated (module docstring)."""
    leads = tuple(_days(r.lead) for r in found)
    if not found:
        return Automation(label="no renewal seen", lead_days=leads)
    if len(found) == 1:
        return Automation(label="one renewal", lead_days=leads)
    spread = max(leads) - min(leads)
    tolerance = max(2.0, statistics.median(leads) / 4)
    regular = min(leads) > 0 and spread <= tolerance
    return Automation(label="automated" if regular else "irregular", lead_days=leads)


def _late(renewal: Renewal, policy: Policy) -> bool:
    old = renewal.old
    assert old.not_before is not None
    assert old.not_after is not None
    if renewal.seen_at >= old.not_after:
        return True
    return expiry_severity(old.not_before, old.not_after, renewal.seen_at, policy) is (
        Severity.CRITICAL
    )


def _n_days(days: float) -> str:
    return f"{days:g} day" if days == 1 else f"{days:g} days"


def _listed(found: Sequence[Renewal]) -> str:
    parts = []
    for r in found:
        days = _days(r.lead)
        parts.append(f"{_n_days(days)} before" if days >= 0 else f"{_n_days(-days)} after")
    return " and ".join(parts)


def renews_late(runs: Sequence[LeafRun], policy: Policy) -> Proposal | None:
    """``renews_late`` for the current leaf (``runs[-1]``), or ``None``."""
    found = renewals(runs)
    if len(found) < _LATE_RUN:
        return None
    last = found[-_LATE_RUN:]
    if not all(_late(r, policy) for r in last):
        return None
    message = (
        f"the last {len(last)} renewals came {_listed(last)} the old certificate expired, "
        f"inside the critical window ({policy.expiring_critical_days} days, scaled for "
        "short-lived certificates): renew earlier"
    )
    return Proposal(
        kind="renews_late", severity=Severity.MEDIUM, message=message, sha256=runs[-1].leaf.sha256
    )


def renewal_not_observed(runs: Sequence[LeafRun], now: datetime) -> Proposal | None:
    """``renewal_not_observed`` for the current leaf (``runs[-1]``) at ``now``, or ``None``."""
    if not runs:
        return None
    found = renewals(runs)
    current = runs[-1].leaf
    if not found or not _dated(current) or found[-1].new.sha256 != current.sha256:
        return None
    assert current.not_before is not None
    assert current.not_after is not None
    remaining = current.not_after - now
    lifetime = current.not_after - current.not_before
    shortest = min(r.lead for r in found)
    if remaining <= timedelta(0) or remaining > lifetime / 3 or remaining >= shortest:
        return None
    name = quote(current.subject_cn or current.sha256[:16])
    message = (
        f"leaf {name} expires {current.not_after:%Y-%m-%d}, in {_n_days(_days(remaining))} (the "
        f"last third of its {_days(lifetime):g}-day life), and no successor has been seen; "
        f"earlier renewals came {_n_days(_days(shortest))} or more before expiry"
    )
    return Proposal(
        kind="renewal_not_observed",
        severity=Severity.MEDIUM,
        message=message,
        sha256=current.sha256,
    )
