"""The daily digests of notification hooks: the ``notify_digest`` table (revision 0009_notify).

Theory of operation
-------------------
A hook with ``digest = "daily"`` does not send when it selects a finding: :func:`collect` keeps
the finding (its JSON context) under the UTC day it was selected on, one row per (hook, day,
certificate); a later selection of the same certificate on the same day (its finding rose)
replaces the row's facts. The day ``[00:00, 24:00)`` UTC is the *window*; :func:`window_of`
gives its start.

Once a window has ended, the first run that looks (:func:`due`) claims the window's unsent rows
with a fresh token (:func:`claim`: one conditional UPDATE, so two runners never both send a
digest) and delivers them as one message; :func:`sent` marks them delivered, :func:`failed`
releases the claim with a time before which no one retries. A claim older than
:data:`STALE_CLAIM` was left by a runner that died and may be taken again -- the only way a
digest can go out twice (the runner died after sending and before recording it).

Functions take the inventory's engine; they are synchronous, for ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from scanner.inventory import tables as t

__all__ = [
    "STALE_CLAIM",
    "DigestEntry",
    "claim",
    "collect",
    "due",
    "failed",
    "sent",
    "window_of",
]

DAY: Final = timedelta(days=1)
#: A claim this old was left by a runner that died while sending.
STALE_CLAIM: Final = timedelta(minutes=30)


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestEntry:
    """One collected finding."""

    id: int
    hook: str
    window_start: datetime  # UTC midnight
    sha256: str
    kind: str
    severity: str
    context: Mapping[str, Any]  # the finding as the hook's JSON (HookContext.finding)
    collected_at: datetime
    attempts: int


def window_of(at: datetime) -> datetime:
    """The start of the UTC day holding ``at`` (pure)."""
    day = at.astimezone(UTC)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def collect(
    engine: Engine,
    *,
    hook: str,
    sha256: str,
    kind: str,
    severity: str,
    context: Mapping[str, Any],
    now: datetime,
) -> datetime:
    """Keep one finding for ``hook``'s digest of the day holding ``now``; returns the window's
    start. The same certificate again on the same day replaces the facts (one entry each)."""
    start = window_of(now)
    d = t.NOTIFY_DIGEST
    values = {
        "kind": kind,
        "severity": severity,
        "context": json.dumps(dict(context), ensure_ascii=True, sort_keys=True),
        "collected_at": now,
    }
    with engine.begin() as conn:
        updated = conn.execute(
            sa.update(d)
            .where(
                d.c.hook == hook,
                d.c.window_start == start,
                d.c.sha256 == sha256,
                d.c.sent_at.is_(None),
                d.c.claim.is_(None),
            )
            .values(values)
        )
        if updated.rowcount == 0:
            exists = conn.execute(
                sa.select(d.c.id).where(
                    d.c.hook == hook, d.c.window_start == start, d.c.sha256 == sha256
                )
            ).first()
            if exists is None:
                conn.execute(
                    sa.insert(d).values(
                        hook=hook, window_start=start, sha256=sha256, attempts=0, **values
                    )
                )
    return start


def due(engine: Engine, hooks: Iterable[str], now: datetime) -> list[tuple[str, datetime]]:
    """The (hook, window start) pairs with unsent entries whose window has ended, oldest first,
    not waiting for a retry and not claimed by a live runner."""
    names = list(hooks)
    if not names:
        return []
    d = t.NOTIFY_DIGEST
    query = (
        sa.select(d.c.hook, d.c.window_start)
        .where(
            d.c.hook.in_(names),
            d.c.sent_at.is_(None),
            d.c.window_start <= window_of(now) - DAY,
            sa.or_(d.c.next_attempt_at.is_(None), d.c.next_attempt_at <= now),
            sa.or_(d.c.claim.is_(None), d.c.claimed_at <= now - STALE_CLAIM),
        )
        .group_by(d.c.hook, d.c.window_start)
        .order_by(d.c.window_start, d.c.hook)
    )
    with engine.connect() as conn:
        return [(r.hook, r.window_start) for r in conn.execute(query)]


def claim(
    engine: Engine, hook: str, window_start: datetime, token: str, now: datetime
) -> list[DigestEntry]:
    """Take the window's unsent entries for delivery under ``token``; [] when another runner
    holds them. Counts an attempt on each."""
    d = t.NOTIFY_DIGEST
    with engine.begin() as conn:
        conn.execute(
            sa.update(d)
            .where(
                d.c.hook == hook,
                d.c.window_start == window_start,
                d.c.sent_at.is_(None),
                sa.or_(d.c.claim.is_(None), d.c.claimed_at <= now - STALE_CLAIM),
            )
            .values(claim=token, claimed_at=now, attempts=d.c.attempts + 1)
        )
        rows = conn.execute(
            sa.select(d).where(d.c.claim == token).order_by(d.c.collected_at, d.c.id)
        ).all()
    return [
        DigestEntry(
            id=r.id,
            hook=r.hook,
            window_start=r.window_start,
            sha256=r.sha256,
            kind=r.kind,
            severity=r.severity,
            context=json.loads(r.context),
            collected_at=r.collected_at,
            attempts=r.attempts,
        )
        for r in rows
    ]


def sent(engine: Engine, token: str, now: datetime) -> int:
    """Mark the entries claimed under ``token`` delivered; how many."""
    d = t.NOTIFY_DIGEST
    with engine.begin() as conn:
        done = conn.execute(
            sa.update(d)
            .where(d.c.claim == token)
            .values(sent_at=now, claim=None, last_error=None, next_attempt_at=None)
        )
        return int(done.rowcount)


def failed(engine: Engine, token: str, error: str, retry_at: datetime) -> None:
    """Release the entries claimed under ``token`` after a failed delivery, to be retried from
    ``retry_at``."""
    d = t.NOTIFY_DIGEST
    text = error.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")[:1000]
    with engine.begin() as conn:
        conn.execute(
            sa.update(d)
            .where(d.c.claim == token)
            .values(claim=None, claimed_at=None, last_error=text, next_attempt_at=retry_at)
        )


def pending(engine: Engine, hooks: Iterable[str]) -> dict[tuple[str, datetime], int]:
    """(hook, window start) -> unsent entries, for ``certscan hooks list``."""
    names = list(hooks)
    if not names:
        return {}
    d = t.NOTIFY_DIGEST
    query = (
        sa.select(d.c.hook, d.c.window_start, sa.func.count())
        .where(d.c.hook.in_(names), d.c.sent_at.is_(None))
        .group_by(d.c.hook, d.c.window_start)
    )
    with engine.connect() as conn:
        return {(r[0], r[1]): int(r[2]) for r in conn.execute(query)}
