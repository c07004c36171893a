"""Renewal behaviour (reports.renewal): properties over generated leaf histories, and examples.

Histories are sequences of leaf runs; each leaf is a small ``CertInfo`` with only the fields the
rules read (validity and identity), so thousands of histories cost nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from reports.policy import Policy
from reports.renewal import automation, renewal_not_observed, renewals, renews_late
from scanner.inventory.history import LeafRun
from scanner.models import CertInfo

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def info(n: int, start: float, lifetime: float) -> CertInfo:
    return CertInfo(
        der=b"",
        sha256=f"{n:064x}",
        subject_cn=f"leaf {n}",
        not_before=EPOCH + start * DAY,
        not_after=EPOCH + (start + lifetime) * DAY,
    )


def history(cycle: float, lead: float, count: int, lifetime: float = 90) -> list[LeafRun]:
    """``count`` leaves, each deployed ``lead`` days before the previous one expired."""
    runs = []
    for n in range(count):
        start = n * cycle
        seen = start if n == 0 else (n - 1) * cycle + lifetime - lead
        runs.append(
            LeafRun(
                first_seen=EPOCH + seen * DAY,
                observation_id=n + 1,
                scan_id=n + 1,
                leaf=info(n, start, lifetime),
            )
        )
    return runs


# One leaf: (its start day, its lifetime in days, first seen so many days after its start).
leaves = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=2000),
        st.integers(min_value=1, max_value=400),
        st.integers(min_value=0, max_value=60),
    ),
    max_size=12,
)


def runs_of(spec: list[tuple[int, int, int]], order: list[int] | None = None) -> list[LeafRun]:
    out = []
    for i, (start, lifetime, late) in enumerate(spec):
        out.append(
            LeafRun(
                first_seen=EPOCH + (start + late) * DAY,
                observation_id=i + 1,
                scan_id=i + 1,
                leaf=info(i if order is None else order[i], start, lifetime),
            )
        )
    out.sort(key=lambda r: r.first_seen)
    return out


@given(leaves)
def test_each_renewal_ends_later_and_is_new(spec: list[tuple[int, int, int]]) -> None:
    runs = runs_of(spec)
    found = renewals(runs)
    assert len(found) <= max(0, len(runs) - 1)
    for r in found:
        assert r.new.not_after is not None
        assert r.old.not_after is not None
        assert r.new.not_after > r.old.not_after
        assert r.lead == r.old.not_after - r.seen_at
    news = [r.new.sha256 for r in found]
    assert len(news) == len(set(news))  # a leaf is renewed into at most once
    ends = [r.new.not_after for r in found]
    assert ends == sorted(ends)  # renewals only move forward


@given(leaves, st.integers(min_value=-5000, max_value=5000))
def test_shifting_time_changes_nothing(spec: list[tuple[int, int, int]], shift: int) -> None:
    runs = runs_of(spec)
    moved = runs_of([(s + shift, lifetime, late) for s, lifetime, late in spec])
    assert [r.lead for r in renewals(runs)] == [r.lead for r in renewals(moved)]
    assert automation(renewals(runs)) == automation(renewals(moved))


@given(leaves)
def test_a_returning_leaf_is_never_a_renewal(spec: list[tuple[int, int, int]]) -> None:
    runs = runs_of(spec)
    if not runs:
        return
    # the first leaf comes back at the end: never a renewal, whatever came between
    comeback = LeafRun(
        first_seen=runs[-1].first_seen + DAY, observation_id=99, scan_id=99, leaf=runs[0].leaf
    )
    assert renewals([*runs, comeback]) == renewals(runs)


@given(
    st.integers(min_value=30, max_value=365),
    st.integers(min_value=1, max_value=29),
    st.integers(min_value=3, max_value=10),
)
def test_regular_lead_times_look_automated(lifetime: int, lead: int, count: int) -> None:
    cycle = lifetime - lead
    runs = history(cycle, lead, count, lifetime)
    found = renewals(runs)
    assert len(found) == count - 1
    assert all(r.lead == lead * DAY for r in found)
    assert automation(found).label == "automated"


@given(st.integers(min_value=3, max_value=10), st.integers(min_value=0, max_value=6))
def test_late_renewals_are_a_finding_only_as_a_habit(count: int, lead: int) -> None:
    runs = history(90 - lead, lead, count)
    finding = renews_late(runs, Policy())
    assert finding is not None  # every renewal inside the 7-day critical window
    assert finding.sha256 == runs[-1].leaf.sha256
    assert renews_late(runs[:2], Policy()) is None  # one late renewal is an event
    assert renews_late(history(60, 30, count), Policy()) is None


@given(st.integers(min_value=2, max_value=8), st.floats(min_value=0.0, max_value=1.0))
def test_missing_successor(count: int, fraction: float) -> None:
    runs = history(60, 30, count)  # renewed 30 days ahead, every time
    current = runs[-1].leaf
    assert current.not_after is not None
    moment = current.not_after - fraction * 90 * DAY
    finding = renewal_not_observed(runs, moment)
    remaining = current.not_after - moment
    expected = timedelta(0) < remaining < 30 * DAY  # past the usual point, still valid
    assert (finding is not None) == expected
    assert renewal_not_observed(runs[:1], moment) is None  # never renewed: nothing to expect


def test_examples() -> None:
    assert automation(renewals([])).label == "no renewal seen"
    assert automation(renewals(history(60, 30, 2))).label == "one renewal"
    irregular = [*history(60, 30, 2), *history(60, 30, 3)[2:]]
    irregular[2] = LeafRun(
        first_seen=irregular[2].first_seen + 25 * DAY,
        observation_id=3,
        scan_id=3,
        leaf=irregular[2].leaf,
    )  # the second renewal came 5 days before expiry, the first 30
    behaviour = automation(renewals(irregular))
    assert behaviour.label == "irregular"
    assert behaviour.lead_days == (30.0, 5.0)
