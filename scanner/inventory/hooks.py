"""The record of renewal hook actions: the ``hook_run`` table (schema 4).

Theory of operation
-------------------
One row per (hook, certificate sha256) *episode*: the row is created when a hook first selects a
certificate -- as ``pending`` when the hook needs approval, else straight to ``running`` -- and
then carries every attempt: ``attempts`` counts them, ``started_at``/``finished_at``,
``exit_status`` and ``output_tail`` describe the latest, and a failure sets ``next_attempt_at``
(the back-off). A ``succeeded`` or ``rejected`` row ends the episode: the hook does not act on
that certificate again. Moving a row to ``running`` is a conditional UPDATE (:func:`claim`), so
two runners never perform one attempt twice. Nothing secret is stored: the output tail is what
the action printed or what the server answered.

Functions take the inventory's engine (``Inventory.engine``); they are synchronous, for
``trio.to_thread.run_sync``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from scanner.inventory import tables as t

PENDING: Final = "pending"
APPROVED: Final = "approved"
REJECTED: Final = "rejected"
RUNNING: Final = "running"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
STATUSES: Final = (PENDING, APPROVED, REJECTED, RUNNING, SUCCEEDED, FAILED)


@dataclass(frozen=True, slots=True, kw_only=True)
class HookRunRecord:
    """One ``hook_run`` row."""

    id: int
    hook: str
    sha256: str
    address: str
    port: int
    sni: str | None  # None when no SNI was sent
    kind: str  # the finding kind that triggered it
    status: str  # one of STATUSES
    created_at: datetime  # UTC
    started_at: datetime | None  # UTC, the latest attempt; None before the first
    finished_at: datetime | None  # UTC; None while pending, approved or running
    exit_status: int | None
    output_tail: str | None
    new_sha256: str | None  # the renewed certificate, when the action reported one
    attempts: int
    next_attempt_at: datetime | None  # UTC, when a failed run may be retried
    decided_by: str | None  # who approved or rejected; None when no one did
    decided_at: datetime | None
    #: Renewal verification (``scanner.inventory.renewals``): the endpoints serving the new
    #: certificate, of those that must; None until a renewal is verified.
    endpoints_deployed: int | None = None
    endpoints_total: int | None = None
    verify_until: datetime | None = None
    #: The severity of the finding this run acted on (revision 0009_notify); None in older rows.
    severity: str | None = None


_FIELDS: Final = tuple(f.name for f in fields(HookRunRecord))


def _record(row: sa.Row[Any]) -> HookRunRecord:
    values = dict(row._mapping)
    values["sni"] = values["sni"] or None
    return HookRunRecord(**{name: values[name] for name in _FIELDS})


def _select() -> sa.Select[Any]:
    return sa.select(*(t.HOOK_RUN.c[name] for name in _FIELDS))


def create(
    engine: Engine,
    *,
    hook: str,
    sha256: str,
    address: str,
    port: int,
    sni: str | None,
    kind: str,
    status: str,
    now: datetime,
    severity: str | None = None,
) -> int:
    """A new episode row, ``pending`` or ``running`` (then its first attempt starts at ``now``);
    ``severity`` is the finding's, kept so a notification can tell when it rises."""
    if status not in (PENDING, RUNNING):
        raise ValueError(f"a hook run starts pending or running, not {status!r}")
    running = status == RUNNING
    values = {
        "hook": hook,
        "sha256": sha256,
        "address": address,
        "port": port,
        "sni": sni or "",
        "kind": kind,
        "severity": severity,
        "status": status,
        "created_at": now,
        "started_at": now if running else None,
        "attempts": 1 if running else 0,
    }
    with engine.begin() as conn:
        result = conn.execute(sa.insert(t.HOOK_RUN).values(values).returning(t.HOOK_RUN.c.id))
        return int(result.scalar_one())


def claim(engine: Engine, run_id: int, expected: str, now: datetime) -> bool:
    """Move a run from ``expected`` (approved or failed) to running, counting an attempt; False
    when another runner changed it first."""
    h = t.HOOK_RUN
    with engine.begin() as conn:
        done = conn.execute(
            sa.update(h)
            .where(h.c.id == run_id, h.c.status == expected)
            .values(status=RUNNING, started_at=now, finished_at=None, attempts=h.c.attempts + 1)
        )
        return done.rowcount == 1


def finish(
    engine: Engine,
    run_id: int,
    *,
    ok: bool,
    exit_status: int | None,
    output_tail: str,
    new_sha256: str | None,
    now: datetime,
    next_attempt_at: datetime | None,
) -> None:
    """Record the end of the running attempt."""
    h = t.HOOK_RUN
    with engine.begin() as conn:
        conn.execute(
            sa.update(h)
            .where(h.c.id == run_id)
            .values(
                status=SUCCEEDED if ok else FAILED,
                finished_at=now,
                exit_status=exit_status,
                output_tail=_clean(output_tail),
                new_sha256=new_sha256,
                next_attempt_at=None if ok else next_attempt_at,
            )
        )


def _clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL; lone surrogates cannot be encoded: neither is stored.
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def decide(engine: Engine, run_id: int, *, approve: bool, by: str, now: datetime) -> bool:
    """Approve or reject a pending run; False when there is no pending run with that id."""
    h = t.HOOK_RUN
    with engine.begin() as conn:
        done = conn.execute(
            sa.update(h)
            .where(h.c.id == run_id, h.c.status == PENDING)
            .values(status=APPROVED if approve else REJECTED, decided_by=_clean(by), decided_at=now)
        )
        return done.rowcount == 1


def get(engine: Engine, run_id: int) -> HookRunRecord | None:
    with engine.connect() as conn:
        row = conn.execute(_select().where(t.HOOK_RUN.c.id == run_id)).one_or_none()
        return None if row is None else _record(row)


def latest(engine: Engine, hooks: Iterable[str]) -> dict[tuple[str, str], HookRunRecord]:
    """The newest row of each (hook, sha256) episode of these hooks."""
    names = list(hooks)
    if not names:
        return {}
    h = t.HOOK_RUN
    newest = (
        sa.select(sa.func.max(h.c.id)).where(h.c.hook.in_(names)).group_by(h.c.hook, h.c.sha256)
    )
    with engine.connect() as conn:
        rows = conn.execute(_select().where(h.c.id.in_(newest))).all()
    return {(r.hook, r.sha256): _record(r) for r in rows}


def history(engine: Engine, *, limit: int = 100) -> list[HookRunRecord]:
    """The newest ``limit`` rows, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(_select().order_by(t.HOOK_RUN.c.id.desc()).limit(limit)).all()
    return [_record(r) for r in rows]
