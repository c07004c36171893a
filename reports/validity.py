"""The longest validity a publicly trusted TLS certificate may have, by when it was issued.

CA/Browser Forum ballot SC-081v3 (Baseline Requirements 6.3.2) shortens the maximum validity
of subscriber certificates in steps, by the date of issuance: 398 days before 2026-03-15,
200 days from 2026-03-15, 100 days from 2027-03-15 and 47 days from 2029-03-15. A certificate's
``notBefore`` stands for its issuance date (CAs may backdate it, never by much), so each
certificate is judged by the limit in force at its ``notBefore``: a 398-day certificate issued in
2025 is fine until it expires, the same lifetime issued in 2026 is not. Pure.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["LIMITS", "PRE_LIMIT_DAYS", "max_validity_days"]

#: Before the first step of SC-081v3.
PRE_LIMIT_DAYS = 398

#: ``(in force from, days)``, newest first.
LIMITS: tuple[tuple[datetime, int], ...] = (
    (datetime(2029, 3, 15, tzinfo=UTC), 47),
    (datetime(2027, 3, 15, tzinfo=UTC), 100),
    (datetime(2026, 3, 15, tzinfo=UTC), 200),
)


def max_validity_days(not_before: datetime) -> int:
    """The maximum validity (days) in force at ``not_before`` (timezone-aware UTC)."""
    for since, days in LIMITS:
        if not_before >= since:
            return days
    return PRE_LIMIT_DAYS
