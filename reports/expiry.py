"""When a certificate counts as expiring: the ``expiring`` severity, shared by the rules that
judge one observation (:mod:`reports.rules`) and those that judge history and fleets
(:mod:`reports.renewal`, :mod:`reports.fleet`). Pure."""

from __future__ import annotations

from datetime import datetime, timedelta

from reports.policy import Policy
from scanner.models import Severity

__all__ = ["expiry_severity", "high_lead"]


def _scale(lifetime: float, policy: Policy) -> float:
    """How much the day windows shrink for a short-lived certificate (1.0: not at all)."""
    high_seconds = policy.expiring_high_days * 86400
    if high_seconds <= 0:
        return 1.0
    return max(0.0, min(1.0, lifetime * policy.short_lived_fraction / high_seconds))


def high_lead(not_before: datetime, not_after: datetime, policy: Policy) -> timedelta:
    """How long before ``not_after`` ``expiring`` turns high: the point the policy would renew
    at (``expiring_high_fraction`` of the lifetime when set, else ``expiring_high_days``,
    shrunk in proportion for short-lived certificates)."""
    lifetime = (not_after - not_before).total_seconds()
    if policy.expiring_high_fraction is not None:
        return timedelta(seconds=max(0.0, lifetime) * policy.expiring_high_fraction)
    return timedelta(days=policy.expiring_high_days) * _scale(lifetime, policy)


def expiry_severity(
    not_before: datetime, not_after: datetime, now: datetime, policy: Policy
) -> Severity | None:
    """The ``expiring`` severity at ``now``, ``None`` when not expiring (or already expired)."""
    remaining = not_after - now
    if remaining < timedelta(0):
        return None
    scale = _scale((not_after - not_before).total_seconds(), policy)
    if remaining <= timedelta(days=policy.expiring_critical_days) * scale:
        return Severity.CRITICAL
    if remaining <= high_lead(not_before, not_after, policy):
        return Severity.HIGH
    return None
