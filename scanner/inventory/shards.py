"""The shards of a sharded scan: their rows, counters and the hand-over between attempts.

Theory of operation
-------------------
A sharded scan (``sweep --workers``, ``sweep --shards``, ``certscan dispatch``) is one
``scan_run`` with one ``scan_shard`` row per shard. Observations carry their shard, and their
``target_index`` is the position in that shard, so each shard resumes on its own.

Two ways of writing, one per kind of writer:

* **Local workers** (``--workers``) write their own batches (:func:`advance`): counters add
  up, exactly as an unsharded scan's do, and ``resume`` restarts each shard at its watermark.
* **Zone agents** have no database; ``certscan ingest`` writes for them through
  :mod:`scanner.inventory.zone`, idempotently and only for shards dispatched to a zone.

The scan's own counters are the sums of its shards' (:func:`sum_into_scan`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from scanner.inventory import tables as t
from scanner.inventory.schema import insert_for

#: Shard states; ``done`` and ``failed`` are final.
SHARD_STATUSES = ("queued", "running", "done", "failed", "interrupted")
FINAL = ("done", "failed")


@dataclass(frozen=True, slots=True)
class ShardRecord:
    """One ``scan_shard`` row."""

    scan_id: int
    shard: int
    status: str
    zone: str | None
    total: int
    watermark: int
    done: int
    ok: int
    failed: int
    attempts: int
    attempt: str | None
    attempt_started_at: datetime | None
    agent: str | None
    error: str | None
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    rejected: int | None = None  # outcomes ingest refused (not planned, hostile), None: none
    announced: int | None = None  # batches the owning attempt announced in its finish
    dead_letters: int | None = None  # messages ingest gave up storing (dead-letter queue)


_FIELDS = tuple(f.name for f in fields(ShardRecord))


class ShardRejected(ValueError):
    """A zone message names no shard it may change (unknown scan or shard, a local shard, a
    scan no longer running, an attempt time out of bounds): rejected, on one line."""


@dataclass(frozen=True, slots=True)
class ShardFinish:
    """What :func:`finish` did: ``state`` is ``done``/``failed`` (recorded), ``incomplete``
    (batches of the attempt are still missing: try again later) or ``stale`` (another attempt
    owns the shard, or it was settled already: nothing changed). ``scan_settled`` is True for
    the one call that settled the scan's last shard."""

    state: str
    scan_settled: bool = False


def add(
    conn: Connection,
    scan_id: int,
    totals: Sequence[int],
    *,
    zone: str | None,
    status: str,
    now: datetime,
) -> None:
    """A row per shard (shard ``i`` holds ``totals[i]`` targets); existing rows are kept."""
    if status not in SHARD_STATUSES:
        raise ValueError(f"unknown shard status {status!r}")
    rows = [
        {
            "scan_id": scan_id,
            "shard": i,
            "status": status,
            "zone": zone,
            "total": total,
            "watermark": 0,
            "done": 0,
            "ok": 0,
            "failed": 0,
            "attempts": 0,
            "queued_at": now,
            "updated_at": now,
        }
        for i, total in enumerate(totals)
    ]
    if rows:
        conn.execute(insert_for(conn, t.SCAN_SHARD).on_conflict_do_nothing(), rows)


def _where(scan_id: int, shard: int) -> Any:
    s = t.SCAN_SHARD
    return sa.and_(s.c.scan_id == scan_id, s.c.shard == shard)


def advance(
    conn: Connection, scan_id: int, shard: int, watermark: int, done: int, ok: int, now: datetime
) -> None:
    """A local worker stored a batch: add its counts (capped at the total), raise the mark."""
    s = t.SCAN_SHARD
    failed = done - ok
    result = conn.execute(
        sa.update(s)
        .where(_where(scan_id, shard))
        .values(
            done=sa.case((s.c.done + done > s.c.total, s.c.total), else_=s.c.done + done),
            ok=s.c.ok + ok,
            failed=sa.case(
                (s.c.failed + failed > s.c.total - s.c.ok, s.c.total - s.c.ok),
                else_=s.c.failed + failed,
            ),
            watermark=sa.case((s.c.watermark < watermark, watermark), else_=s.c.watermark),
            updated_at=now,
        )
    )
    if result.rowcount != 1:
        raise ValueError(f"scan {scan_id} has no shard {shard}")


def mark(
    conn: Connection,
    scan_id: int,
    shard: int,
    status: str,
    *,
    now: datetime,
    agent: str | None = None,
    error: str | None = None,
) -> None:
    """Set a shard's status (local workers: running, done, failed, interrupted)."""
    if status not in SHARD_STATUSES:
        raise ValueError(f"unknown shard status {status!r}")
    s = t.SCAN_SHARD
    values: dict[str, Any] = {"status": status, "updated_at": now, "error": t.clean_text(error)}
    if status == "running":
        values |= {"started_at": sa.func.coalesce(s.c.started_at, now), "finished_at": None}
        values |= {"attempts": s.c.attempts + 1, "agent": t.clean_text(agent)}
    elif status in FINAL:
        values["finished_at"] = now
    result = conn.execute(sa.update(s).where(_where(scan_id, shard)).values(**values))
    if result.rowcount != 1:
        raise ValueError(f"scan {scan_id} has no shard {shard}")


def resume(conn: Connection, scan_id: int, shard: int) -> tuple[int, set[tuple[str, int, str]]]:
    """A local shard's watermark, and the targets it stored at or above it (or unindexed)."""
    s, o, e = t.SCAN_SHARD, t.OBSERVATION, t.ENDPOINT
    watermark = conn.execute(
        sa.select(s.c.watermark).where(_where(scan_id, shard))
    ).scalar_one_or_none()
    if watermark is None:
        raise ShardRejected(f"scan {scan_id} has no shard {shard}")
    rows = conn.execute(
        sa.select(e.c.address, e.c.port, e.c.sni)
        .join_from(o, e, o.c.endpoint_id == e.c.id)
        .where(o.c.scan_id == scan_id, o.c.shard == shard)
        .where(sa.or_(o.c.target_index >= watermark, o.c.target_index.is_(None)))
    ).all()
    return int(watermark), {(a, p, sni) for a, p, sni in rows}


def lock_scan(conn: Connection, scan_id: int) -> None:
    """Lock the scan's row for this transaction (PostgreSQL; SQLite writers hold the database
    lock already). Every shard change of a distributed scan takes it first, so they cannot
    deadlock on each other."""
    r = t.SCAN_RUN
    found = conn.execute(
        sa.select(r.c.id).where(r.c.id == scan_id).with_for_update()
    ).scalar_one_or_none()
    if found is None:
        raise ShardRejected(f"no scan {scan_id} in the inventory")


def sum_into_scan(conn: Connection, scan_id: int) -> None:
    """Set the scan's ``done``/``ok``/``failed`` to the sums of its shards'."""
    s, r = t.SCAN_SHARD, t.SCAN_RUN

    def total(column: sa.Column[Any]) -> Any:
        return (
            sa.select(sa.func.coalesce(sa.func.sum(column), 0))
            .where(s.c.scan_id == scan_id)
            .scalar_subquery()
        )

    conn.execute(
        sa.update(r)
        .where(r.c.id == scan_id)
        .values(done=total(s.c.done), ok=total(s.c.ok), failed=total(s.c.failed))
    )


def read(conn: Connection, scan_id: int) -> list[ShardRecord]:
    """The shards of a scan, by number."""
    s = t.SCAN_SHARD
    rows = conn.execute(sa.select(s).where(s.c.scan_id == scan_id).order_by(s.c.shard))
    return [ShardRecord(**{name: row._mapping[name] for name in _FIELDS}) for row in rows]


def counts(conn: Connection, scan_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """For each scan, how many shards are in each state."""
    s = t.SCAN_SHARD
    out: dict[int, dict[str, int]] = {}
    if not scan_ids:
        return out
    rows = conn.execute(
        sa.select(s.c.scan_id, s.c.status, sa.func.count())
        .where(s.c.scan_id.in_(list(scan_ids)))
        .group_by(s.c.scan_id, s.c.status)
    )
    for scan_id, status, n in rows:
        out.setdefault(scan_id, {})[status] = int(n)
    return out
