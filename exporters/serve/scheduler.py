"""When named scan jobs run: intervals ("6h"), 5-field cron expressions, and the loop that runs
each job at its slots.

Theory of operation
-------------------
A schedule is pure: :meth:`Interval.next_after` and :meth:`Cron.next_after` map a moment (aware,
UTC) to the next slot strictly after it. Cron expressions are read in UTC, Vixie-style: when both
day-of-month and day-of-week are restricted a day matching either runs (``0 3 1 * 1``: the 1st and
every Monday).

:class:`Scheduler` runs one task per job. The task sleeps until the job's next slot, then runs it
*in that task*, so a job never overlaps itself: a slot that passes while the job is still running
is skipped (logged), never queued. A job that raises is logged and runs again at its next slot.
:meth:`Scheduler.trigger` ("scan now") starts a job outside its schedule unless it is running. The
clock is injected (``now``), so the tests run on trio's autojump clock: sleeping is
``trio.sleep(seconds until the slot)``, which the autojump clock skips.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import trio

from scanner.errors import CertscanError

__all__ = [
    "Cron",
    "Interval",
    "JobState",
    "Schedule",
    "Scheduler",
    "parse_cron",
    "parse_interval",
    "parse_schedule",
]

log = logging.getLogger("certscan.scheduler")

_INTERVAL = re.compile(r"(\d{1,7})\s*([smhdw])", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: A cron search gives up after this many days (no date matches, e.g. ``0 0 31 2 *``).
_CRON_HORIZON_DAYS = 5 * 366


@dataclass(frozen=True, slots=True, kw_only=True)
class Interval:
    """Every ``seconds``; the first slot is when the job's loop starts (daemon start, or the
    reload that added the job), so an interval job runs at once."""

    seconds: int
    text: str

    def next_after(self, moment: datetime, *, start: datetime) -> datetime:
        """The first slot ``start + k * seconds`` strictly after ``moment`` (``start`` itself
        when ``moment`` is before it)."""
        if moment < start:
            return start
        steps = int((moment - start).total_seconds() // self.seconds) + 1
        return start + timedelta(seconds=steps * self.seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cron:
    """A 5-field cron expression: the allowed minutes, hours, days, months and weekdays
    (0 = Sunday). ``dom_any``/``dow_any``: the field was ``*`` (for the day rule)."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    dom_any: bool
    dow_any: bool
    text: str

    def _day_ok(self, day: datetime) -> bool:
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.dom_any or self.dow_any:
            return dom and dow
        return dom or dow

    def next_after(self, moment: datetime) -> datetime:
        """The first matching minute strictly after ``moment`` (UTC). ValueError when no date
        within five years matches."""
        t = moment.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = t.replace(hour=0, minute=0)
        first = True
        for _ in range(_CRON_HORIZON_DAYS):
            if day.month in self.months and self._day_ok(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        slot = day.replace(hour=hour, minute=minute)
                        if not first or slot >= t:
                            return slot
            day += timedelta(days=1)
            first = False
        raise ValueError(f"cron {self.text!r} matches no date in the next five years")


Schedule = Interval | Cron

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12), ("weekday", 0, 7))


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ValueError(f"{name}: bad step {step_text!r}")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif re.fullmatch(r"\d{1,2}-\d{1,2}", base):
            a, b = base.split("-")
            first, last = int(a), int(b)
        elif re.fullmatch(r"\d{1,2}", base):
            first = int(base)
            last = high if step_text else first
        else:
            raise ValueError(f"{name}: cannot read {part!r}")
        if not low <= first <= last <= high:
            raise ValueError(f"{name}: {part!r} is outside {low}-{high}")
        values.update(range(first, last + 1, step))
    return frozenset(values)


def parse_cron(text: str) -> Cron:
    """``"*/15 2-5 * * 1-5"`` -> :class:`Cron`: lists, ranges and steps in every field; weekday
    7 is Sunday. ValueError (one line) for anything else."""
    parts = text.split()
    if len(parts) != 5:
        raise ValueError(f"cron {text!r}: want 5 fields (minute hour day month weekday)")
    sets = [_field(p, n, lo, hi) for p, (n, lo, hi) in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in sets[4])
    cron = Cron(
        minutes=sets[0],
        hours=sets[1],
        days=sets[2],
        months=sets[3],
        weekdays=weekdays,
        dom_any=parts[2].startswith("*"),  # as Vixie cron: "*/2" counts as unrestricted
        dow_any=parts[4].startswith("*"),
        text=" ".join(parts),
    )
    cron.next_after(datetime(2000, 1, 1, tzinfo=UTC))  # ValueError when it never matches
    return cron


def parse_interval(text: str) -> Interval:
    """``"6h"``, ``"30m"``, ``"1d"``, ``"2w"``, ``"45s"`` -> :class:`Interval` (at least 1 s)."""
    match = _INTERVAL.fullmatch(text.strip())
    if match is None or int(match[1]) < 1:
        raise ValueError(f"interval {text!r}: want a number and a unit s, m, h, d or w (6h)")
    return Interval(seconds=int(match[1]) * _UNIT_SECONDS[match[2].lower()], text=text.strip())


def parse_schedule(*, every: str | None, cron: str | None) -> Schedule:
    if (every is None) == (cron is None):
        raise ValueError("give exactly one of 'every' (6h) or 'cron' (0 */6 * * *)")
    return parse_interval(every) if every is not None else parse_cron(cron or "")


# --- the loop ----------------------------------------------------------------------------------

#: Runs the named job once; raising marks the run failed (logged, retried at the next slot).
JobRun = Callable[[str], Awaitable[None]]


@dataclass(slots=True)
class JobState:
    """What the scheduler knows of one job. Times are UTC; ``None`` until it happens."""

    name: str
    schedule: Schedule
    running: bool = False
    next_run: datetime | None = None
    last_start: datetime | None = None
    last_end: datetime | None = None
    last_ok: bool | None = None
    last_success: datetime | None = None
    last_error: str | None = None
    runs: int = 0
    failures: int = 0
    #: When the job's loop started: an interval job's first slot (it runs at once).
    anchor: datetime | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    def as_dict(self) -> dict[str, object]:
        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat().replace("+00:00", "Z")

        return {
            "name": self.name,
            "schedule": self.schedule.text,
            "running": self.running,
            "next_run": iso(self.next_run),
            "last_start": iso(self.last_start),
            "last_end": iso(self.last_end),
            "last_ok": self.last_ok,
            "last_success": iso(self.last_success),
            "last_error": self.last_error,
            "runs": self.runs,
            "failures": self.failures,
        }


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    """Runs ``run(name)`` for every job at its slots (see the module docstring)."""

    def __init__(
        self,
        schedules: Mapping[str, Schedule],
        run: JobRun,
        *,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._run = run
        self._now = now
        self.jobs: dict[str, JobState] = {
            n: JobState(name=n, schedule=s) for n, s in schedules.items()
        }
        self._nursery: trio.Nursery | None = None

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every job at its slots until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for state in self.jobs.values():
                nursery.start_soon(self._loop, state)
            task_status.started()
            await trio.sleep_forever()

    async def run_once(self, *, stop: Callable[[], bool] = lambda: False) -> bool:
        """Run every job once, one after another, until ``stop()`` is true; True when every
        run succeeded."""
        ok = True
        for state in self.jobs.values():
            if stop():
                break
            ok = await self._execute(state, reason="once") and ok
        return ok

    def trigger(self, name: str) -> bool:
        """Start job ``name`` now. False when it is running already. KeyError: no such job;
        RuntimeError: the scheduler is not serving."""
        state = self.jobs[name]
        if self._nursery is None:
            raise RuntimeError("the scheduler is not running")
        if state.running:
            return False
        state.running = True  # claimed now: a second trigger before the task starts is refused
        self._nursery.start_soon(self._execute, state, "manual")
        return True

    def replace(self, schedules: Mapping[str, Schedule]) -> None:
        """Reload: jobs whose schedule is unchanged keep their state and next slot; a job running
        now keeps running and takes its new schedule after the run; removed jobs stop (after
        any run in progress); new jobs start."""
        for name, state in list(self.jobs.items()):
            new = schedules.get(name)
            if new == state.schedule:
                continue
            if new is not None and state.running:
                state.schedule = new  # its loop computes the next slot after this run
                continue
            del self.jobs[name]
            if not state.running:
                state.scope.cancel()
        for name, schedule in schedules.items():
            if name not in self.jobs:
                state = JobState(name=name, schedule=schedule)
                self.jobs[name] = state
                if self._nursery is not None:
                    self._nursery.start_soon(self._loop, state)

    def _next(self, state: JobState, after: datetime) -> datetime:
        if isinstance(state.schedule, Interval):
            return state.schedule.next_after(after, start=state.anchor or after)
        return state.schedule.next_after(after)

    async def _loop(self, state: JobState) -> None:
        state.scope = trio.CancelScope()
        with state.scope:
            state.anchor = self._now()
            moment = state.anchor - timedelta(microseconds=1)
            while True:
                slot = self._next(state, moment)
                state.next_run = slot
                await trio.sleep(max(0.0, (slot - self._now()).total_seconds()))
                if self.jobs.get(state.name) is not state:
                    return  # removed by a reload while a manual run held it
                if state.running:  # a manual run holds the job: skip this slot
                    log.info("slot skipped: job still running", extra={"job": state.name})
                else:
                    state.running = True
                    await self._execute(state, "schedule")
                moment = max(slot, self._now())
                if moment > slot and self._next(state, slot) <= moment:
                    log.info("slots skipped: the job ran past them", extra={"job": state.name})
                if self.jobs.get(state.name) is not state:
                    return

    async def _execute(self, state: JobState, reason: str) -> bool:
        """One run of ``state``'s job; never raises except Cancelled."""
        state.running = True
        state.last_start = self._now()
        state.runs += 1
        log.info("job started", extra={"job": state.name, "reason": reason})
        try:
            await self._run(state.name)
        except Exception as exc:
            state.last_ok, state.failures = False, state.failures + 1
            state.last_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            log.error(
                "job failed",
                extra={"job": state.name, "error": state.last_error},
                exc_info=not isinstance(exc, CertscanError),
            )
            return False
        else:
            state.last_ok, state.last_error = True, None
            state.last_success = self._now()
            log.info("job finished", extra={"job": state.name})
            return True
        finally:
            state.running = False
            state.last_end = self._now()
