"""The daily digest store (``scanner.inventory.notify``) on SQLite and PostgreSQL: windows are
UTC days, an entry per (hook, day, certificate), a window is due only once it has ended, one
claim wins, a failure waits for its retry time, a sent window never comes back, and a claim
left by a dead runner is taken again once stale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from scanner.inventory import notify
from scanner.inventory.store import Inventory

DAY1 = datetime(2031, 5, 1, tzinfo=UTC)


def _keep(inv: Inventory, sha: str, at: datetime, severity: str = "high", hook: str = "h") -> None:
    start = notify.collect(
        inv.engine,
        hook=hook,
        sha256=sha,
        kind="expiring",
        severity=severity,
        context={"sha256": sha, "severity": severity, "message": "m \u202e"},
        now=at,
    )
    assert start == notify.window_of(at)


def test_windows_are_utc_days() -> None:
    assert notify.window_of(datetime(2031, 5, 1, 23, 59, 59, tzinfo=UTC)) == DAY1
    assert notify.window_of(datetime(2031, 5, 2, tzinfo=UTC)) == DAY1 + timedelta(days=1)
    east = timezone(timedelta(hours=2))  # 01:00 on 2 May at UTC+2 is still 1 May in UTC
    assert notify.window_of(datetime(2031, 5, 2, 1, 0, tzinfo=east)) == DAY1


def test_a_window_is_sent_once_after_its_day(inventory: Inventory) -> None:
    engine = inventory.engine
    _keep(inventory, "aa", DAY1 + timedelta(hours=9))
    _keep(inventory, "aa", DAY1 + timedelta(hours=10), severity="critical")  # replaces
    _keep(inventory, "bb", DAY1 + timedelta(hours=11))
    _keep(inventory, "cc", DAY1 + timedelta(days=1, hours=1))  # the next day: its own window
    _keep(inventory, "aa", DAY1 + timedelta(hours=12), hook="other")
    assert notify.pending(engine, ["h"]) == {("h", DAY1): 2, ("h", DAY1 + timedelta(days=1)): 1}
    assert notify.due(engine, ["h"], DAY1 + timedelta(hours=23, minutes=59)) == []
    after = DAY1 + timedelta(days=1, minutes=1)
    assert notify.due(engine, ["h"], after) == [("h", DAY1)]

    entries = notify.claim(engine, "h", DAY1, "t1", after)
    assert [(e.sha256, e.severity) for e in entries] == [("aa", "critical"), ("bb", "high")]
    assert entries[0].context["message"] == "m \u202e"
    assert notify.claim(engine, "h", DAY1, "t2", after) == []  # the other runner gets nothing
    assert notify.due(engine, ["h"], after) == []  # claimed, not stale

    notify.failed(engine, "t1", "SMTPServerDisconnected: gone", after + timedelta(minutes=5))
    assert notify.due(engine, ["h"], after + timedelta(minutes=4)) == []
    assert notify.due(engine, ["h"], after + timedelta(minutes=5)) == [("h", DAY1)]
    again = notify.claim(engine, "h", DAY1, "t3", after + timedelta(minutes=5))
    assert [e.attempts for e in again] == [2, 2]
    assert notify.sent(engine, "t3", after + timedelta(minutes=6)) == 2
    later = DAY1 + timedelta(days=5)
    assert notify.due(engine, ["h"], later) == [("h", DAY1 + timedelta(days=1))]
    assert notify.due(engine, ["other"], later) == [("other", DAY1)]
    assert notify.claim(engine, "h", DAY1, "t4", later) == []  # sent: never again


def test_a_dead_runners_claim_goes_stale(inventory: Inventory) -> None:
    engine = inventory.engine
    _keep(inventory, "aa", DAY1)
    at = DAY1 + timedelta(days=1)
    assert len(notify.claim(engine, "h", DAY1, "dead", at)) == 1
    assert notify.due(engine, ["h"], at + notify.STALE_CLAIM - timedelta(seconds=1)) == []
    stale = at + notify.STALE_CLAIM
    assert notify.due(engine, ["h"], stale) == [("h", DAY1)]
    assert len(notify.claim(engine, "h", DAY1, "alive", stale)) == 1
    assert notify.sent(engine, "dead", stale) == 0  # the dead runner's token holds nothing now
