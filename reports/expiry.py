"""When a certificate counts as expiring: the ``expiring`` severity, shared by the rules that
judge one observation (:mod:`reports.rules`) and those that judge history and fleets
(:mod:`reports.renewal`, :mod:`reports.fleet`). Pure."""

from __future__ import annotations

from datetime import datetime, timedelta

from reports.policy import Policy
from scanner.models import Severity

__all__ = ["expiry_severity"]


def expiry_severity(
    not_before: datetime, not_after: datetime, now: datetime, policy: Policy
) -> Severity | None:
    """The ``expiring`` severity at ``now``, ``None`` when not expiring (or already expired)."""
    remaining = not_after - now
    if remaining < timedelta(0):
        return None
    lifetime = (not_after - not_before).total_seconds()
    high_seconds = policy.expiring_high_days * 86400
    scale = 1.0
    if high_seconds > 0:
        scale = max(0.0, min(1.0, lifetime * policy.short_lived_fraction / high_seconds))
    if remaining <= timedelta(days=policy.expiring_critical_days) * scale:
        return Severity.CRITICAL
    if policy.expiring_high_fraction is not None:
        high = timedelta(seconds=max(0.0, lifetime) * policy.expiring_high_fraction)
    else:
        high = timedelta(days=policy.expiring_high_days) * scale
    if remaining <= high:
        return Severity.HIGH
    return None
