"""The scan scheduler: interval and cron parsing (table-driven), and the job loop on trio's
autojump clock (slots, no overlap, failures retried at the next slot, scan now, reload)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import trio
import trio.testing

from exporters.serve.scheduler import Scheduler, parse_cron, parse_interval, parse_schedule

T0 = datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)  # a Thursday


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("*/15 * * * *", "2026-03-04 10:07:59", "2026-03-04 10:15"),
        ("*/15 * * * *", "2026-03-04 10:15:00", "2026-03-04 10:30"),
        ("0 3 * * *", "2026-03-04 03:00:00", "2026-03-05 03:00"),
        ("0 9 * * 1-5", "2026-03-06 10:00", "2026-03-09 09:00"),  # Friday -> Monday
        ("0 0 * * 7", "2026-03-04 00:00", "2026-03-08 00:00"),  # 7 is Sunday
        ("0 0 1 * 1", "2026-03-01 12:00", "2026-03-02 00:00"),  # day OR weekday: Monday 2nd
        ("0 0 1 * 1", "2026-03-30 12:00", "2026-04-01 00:00"),  # ... and the 1st
        ("0 0 */2 * 1", "2026-03-03 12:00", "2026-03-09 00:00"),  # "*/2" day: Mondays only
        ("30 2 29 2 *", "2026-03-01 00:00", "2028-02-29 02:30"),  # leap day
        ("5,35 1-2 * * *", "2026-03-04 01:35", "2026-03-04 02:05"),
        ("10-50/20 * * * *", "2026-03-04 01:31", "2026-03-04 01:50"),
        ("0 0 1 1,7 *", "2026-02-01 00:00", "2026-07-01 00:00"),
        ("59 23 31 12 *", "2026-12-31 23:59", "2027-12-31 23:59"),
    ],
)
def test_cron_next(expr: str, after: str, expected: str) -> None:
    assert parse_cron(expr).next_after(at(after)) == at(expected)


@pytest.mark.parametrize(
    "expr",
    [
        "* * * *",
        "* * * * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "* * * * 8",
        "*/0 * * * *",
        "5-1 * * * *",
        "a * * * *",
        "1,,2 * * * *",
        "0 0 31 2 *",  # never matches
        "0 0 30 2 *",
    ],
)
def test_cron_rejects(expr: str) -> None:
    with pytest.raises(ValueError, match=r"cron|minute|hour|day|month|weekday"):
        parse_cron(expr)


@pytest.mark.parametrize(
    ("text", "seconds"), [("6h", 21600), ("30m", 1800), ("1d", 86400), ("2w", 1209600), ("45s", 45)]
)
def test_interval(text: str, seconds: int) -> None:
    assert parse_interval(text).seconds == seconds


@pytest.mark.parametrize("text", ["", "0h", "6", "h", "6x", "-1h", "1.5h"])
def test_interval_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="interval"):
        parse_interval(text)


def test_schedule_needs_exactly_one() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        parse_schedule(every="1h", cron="* * * * *")
    with pytest.raises(ValueError, match="exactly one"):
        parse_schedule(every=None, cron=None)


# --- the loop, on the autojump clock ------------------------------------------------------------


def clock() -> tuple[Callable[[], datetime], Callable[[], float]]:
    """``now`` for the scheduler (T0 at the test's start) and seconds since the start."""
    base = trio.current_time()

    def elapsed() -> float:
        return trio.current_time() - base

    return (lambda: T0 + timedelta(seconds=elapsed())), elapsed


class Recorder:
    """A job runner that logs start times, takes ``duration`` seconds and fails on request."""

    def __init__(self, elapsed: Callable[[], float], duration: float = 1.0) -> None:
        self.elapsed, self.duration = elapsed, duration
        self.starts: dict[str, list[float]] = {}
        self.active: dict[str, int] = {}
        self.most: int = 0
        self.fail: set[int] = set()  # run numbers (0-based, per recorder) that raise

    async def __call__(self, name: str) -> None:
        number = sum(len(v) for v in self.starts.values())
        self.starts.setdefault(name, []).append(round(self.elapsed(), 3))
        self.active[name] = self.active.get(name, 0) + 1
        self.most = max(self.most, self.active[name])
        try:
            await trio.sleep(self.duration)
            if number in self.fail:
                raise RuntimeError("boom")
        finally:
            self.active[name] -= 1


async def run_for(scheduler: Scheduler, seconds: float) -> None:
    with trio.move_on_after(seconds):
        await scheduler.serve()


async def test_interval_slots(autojump_clock: trio.testing.MockClock) -> None:
    now, elapsed = clock()
    rec = Recorder(elapsed)
    sched = Scheduler({"a": parse_interval("10s")}, rec, now=now)
    await run_for(sched, 35)
    assert rec.starts == {"a": [0, 10, 20, 30]}
    assert sched.jobs["a"].runs == 4
    assert sched.jobs["a"].last_ok is True


async def test_cron_slots(autojump_clock: trio.testing.MockClock) -> None:
    now, elapsed = clock()
    rec = Recorder(elapsed)
    sched = Scheduler({"c": parse_cron("*/5 * * * *")}, rec, now=now)
    await run_for(sched, 16 * 60)
    # T0 is 00:00:30: slots at 00:05, 00:10, 00:15
    assert rec.starts == {"c": [270, 570, 870]}


async def test_no_overlap_slots_skipped(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    now, elapsed = clock()
    rec = Recorder(elapsed, duration=25)
    sched = Scheduler({"slow": parse_interval("10s")}, rec, now=now)
    await run_for(sched, 65)
    assert rec.starts == {"slow": [0, 30, 60]}  # 10 and 20 (and 40, 50) passed while running
    assert rec.most == 1
    assert [r.getMessage() for r in caplog.records].count(
        "slots skipped: the job ran past them"
    ) == 2


async def test_failure_logged_and_retried(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    now, elapsed = clock()
    rec = Recorder(elapsed)
    rec.fail = {0}
    sched = Scheduler({"a": parse_interval("10s")}, rec, now=now)
    async with trio.open_nursery() as nursery:
        await nursery.start(sched.serve)
        await trio.sleep(5)
        state = sched.jobs["a"]
        assert (state.last_ok, state.failures) == (False, 1)
        assert state.last_error == "RuntimeError: boom"
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert any(r.getMessage() == "job failed" for r in caplog.records)
    assert rec.starts["a"] == [0, 10]  # retried at the next slot
    final = sched.jobs["a"]
    assert (final.last_ok, final.last_error, final.runs) == (True, None, 2)


async def test_jobs_independent(autojump_clock: trio.testing.MockClock) -> None:
    now, elapsed = clock()
    rec = Recorder(elapsed, duration=15)
    sched = Scheduler({"a": parse_interval("10s"), "b": parse_interval("20s")}, rec, now=now)
    await run_for(sched, 45)
    assert rec.starts == {"a": [0, 20, 40], "b": [0, 20, 40]}


async def test_trigger(autojump_clock: trio.testing.MockClock) -> None:
    now, elapsed = clock()
    rec = Recorder(elapsed, duration=8)
    sched = Scheduler({"a": parse_interval("1h")}, rec, now=now)
    with pytest.raises(RuntimeError, match="not running"):
        sched.trigger("a")
    async with trio.open_nursery() as nursery:
        await nursery.start(sched.serve)
        await trio.sleep(1)
        assert sched.jobs["a"].running
        assert sched.trigger("a") is False  # the first slot is running
        await trio.sleep(10)
        assert sched.trigger("a") is True
        assert sched.trigger("a") is False  # claimed at once, before its task starts
        with pytest.raises(KeyError):
            sched.trigger("nope")
        await trio.sleep(20)
        nursery.cancel_scope.cancel()
    assert rec.starts == {"a": [0, 11]}
    assert rec.most == 1


async def test_run_once(autojump_clock: trio.testing.MockClock) -> None:
    now, elapsed = clock()
    rec = Recorder(elapsed, duration=3)
    rec.fail = {1}
    sched = Scheduler({"a": parse_interval("1h"), "b": parse_cron("0 0 * * *")}, rec, now=now)
    assert await sched.run_once() is False
    assert rec.starts == {"a": [0], "b": [3]}  # one after another
    assert sched.jobs["b"].failures == 1


async def test_replace_keeps_unchanged(autojump_clock: trio.testing.MockClock) -> None:
    now, elapsed = clock()
    rec = Recorder(elapsed)
    sched = Scheduler({"keep": parse_interval("10s"), "drop": parse_interval("10s")}, rec, now=now)
    async with trio.open_nursery() as nursery:
        await nursery.start(sched.serve)
        await trio.sleep(5)
        keep = sched.jobs["keep"]
        sched.replace({"keep": parse_interval("10s"), "new": parse_interval("7s")})
        assert sched.jobs["keep"] is keep
        assert "drop" not in sched.jobs
        await trio.sleep(20)
        nursery.cancel_scope.cancel()
    assert rec.starts["keep"] == [0, 10, 20]  # schedule not reset by the reload
    assert rec.starts["drop"] == [0]
    assert rec.starts["new"] == [5, 12, 19]
