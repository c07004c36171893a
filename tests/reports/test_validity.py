"""``long_validity`` by the CA/Browser Forum limit at each certificate's notBefore (SC-081v3),
and the optional ``expiring_high_fraction`` policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reports.findings import evaluate, expiry_severity
from reports.policy import Policy, config_from_mapping
from reports.trust import TrustStore
from reports.validity import max_validity_days
from scanner.errors import UsageError
from scanner.lab import certgen
from scanner.models import Severity
from tests.reports.test_findings import Pki, endpoint

DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("not_before", "days"),
    [
        (utc(2020, 1, 1), 398),
        (utc(2026, 3, 15) - SECOND, 398),
        (utc(2026, 3, 15), 200),
        (utc(2027, 3, 15) - SECOND, 200),
        (utc(2027, 3, 15), 100),
        (utc(2029, 3, 15) - SECOND, 100),
        (utc(2029, 3, 15), 47),
        (utc(2040, 1, 1), 47),
    ],
)
def test_limit_in_force_at_not_before(not_before: datetime, days: int) -> None:
    assert max_validity_days(not_before) == days


@pytest.fixture(scope="module")
def pki() -> Pki:
    old = utc(2020, 1, 1)
    root = certgen.make_ca("Validity Root", not_before=old, not_after=utc(2045, 1, 1))
    inter = certgen.make_ca("Validity CA", issuer=root, not_before=old, not_after=utc(2045, 1, 1))
    store = TrustStore.from_pem(root.cert_pem)
    return Pki(root, inter, root, inter, store)


def _long_validity(pki: Pki, start: datetime, days: float, policy: Policy) -> list[str]:
    issued = certgen.make_leaf(
        pki.inter, dns_names=["www.example.test"], not_before=start, days=days
    )
    found = evaluate(
        endpoint(issued, pki.inter), policy=policy, trust=pki.store, now=start + DAY, context=None
    )
    return [f.message for f in found if f.kind == "long_validity"]


@pytest.mark.parametrize(
    ("start", "days", "limit"),
    [
        (utc(2025, 6, 1), 398, None),  # issued under the 398-day rule: fine
        (utc(2026, 4, 1), 250, 200),  # same shape, a year later: too long
        (utc(2026, 4, 1), 200, None),
        (utc(2027, 6, 1), 150, 100),
        (utc(2029, 6, 1), 90, 47),  # today's usual 90 days is too long from 2029-03-15
        (utc(2029, 6, 1), 47, None),
    ],
)
def test_long_validity_follows_the_ballot(
    pki: Pki, start: datetime, days: int, limit: int | None
) -> None:
    messages = _long_validity(pki, start, days, Policy())
    if limit is None:
        assert messages == []
    else:
        (message,) = messages
        assert f"more than {limit} days (the CA/Browser Forum limit at {start:%Y-%m-%d})" in message


def test_the_policy_key_still_overrides(pki: Pki) -> None:
    start = utc(2029, 6, 1)
    assert _long_validity(pki, start, 90, Policy(max_leaf_validity_days=398)) == []
    (message,) = _long_validity(pki, utc(2024, 1, 1), 90, Policy(max_leaf_validity_days=60))
    assert "more than 60 days (max_leaf_validity_days)" in message


def test_expiring_high_fraction_applies_to_every_lifetime() -> None:
    start = utc(2026, 1, 1)
    quarter = Policy(expiring_high_fraction=0.25)
    for lifetime in (6, 47, 90, 398, 3650):
        end = start + lifetime * DAY
        just_inside = end - lifetime * DAY * 0.24
        just_outside = end - lifetime * DAY * 0.26
        critical = end - min(7.0, lifetime / 3 * 7 / 30) * DAY * 0.5
        assert expiry_severity(start, end, just_inside, quarter) is Severity.HIGH, lifetime
        assert expiry_severity(start, end, just_outside, quarter) is None, lifetime
        assert expiry_severity(start, end, critical, quarter) is Severity.CRITICAL, lifetime
    # Without it, a 10-year certificate turns high 30 days before, not 2.5 years before.
    ten_years = start + 3650 * DAY
    assert expiry_severity(start, ten_years, ten_years - 100 * DAY, Policy()) is None
    assert expiry_severity(start, ten_years, ten_years - 100 * DAY, quarter) is Severity.HIGH


def test_expiring_high_fraction_is_validated() -> None:
    config = config_from_mapping(
        {"policy": {"expiring_high_fraction": 0.2}}, source="c.toml", base=Path()
    )
    assert config.policy.expiring_high_fraction == pytest.approx(0.2)
    for bad in (0, 1.5, "a third", True):
        with pytest.raises(UsageError, match=r"^c\.toml: policy\.expiring_high_fraction: "):
            config_from_mapping(
                {"policy": {"expiring_high_fraction": bad}}, source="c.toml", base=Path()
            )
