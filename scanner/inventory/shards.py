"""The shards of a sharded scan: their rows, counters and the hand-over between attempts.

Theory of operation
-------------------
A sharded scan (``sweep --workers``, ``sweep --shards``, ``certscan dispatch``) is one
``scan_run`` with one ``scan_shard`` row per shard. Observations carry their shard, and their
``target_index`` is the position in that shard, so each shard resumes on its own.

Two ways of writing, one per kind of writer:

* **Local workers** (``--workers``) write their own batches (:func:`advance`): counters add
  up, exactly as an unsharded scan's do, and ``resume`` restarts each shard at its watermark.
* **Zone agents** have no database; ``certscan ingest`` writes for them, and every message may
  arrive twice (a duplicated task, a redelivered one after an agent died, a retried publish).
  So nothing is added up: a batch is stored once by its natural key ``(scan, shard, attempt,
  seq)`` in ``ingested_batch`` (:func:`claim_batch`); its observations are upserts; and progress
  is a *snapshot* the agent took when it cut the batch, applied only if it belongs to the
  attempt that owns the shard and moves forward (:func:`apply_progress`). An attempt is one run
  of a shard task; a later-started attempt takes the shard over (the earlier agent died or its
  task was redelivered), an earlier one is ignored. A shard is done when its owning attempt says
  so AND every batch it announced is stored (:func:`finish`); the call that settles the scan's
  last shard is told so, exactly once, because it holds the scan row's lock while it looks.

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


_FIELDS = tuple(f.name for f in fields(ShardRecord))


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
        raise ValueError(f"scan {scan_id} has no shard {shard}")
    rows = conn.execute(
        sa.select(e.c.address, e.c.port, e.c.sni)
        .join_from(o, e, o.c.endpoint_id == e.c.id)
        .where(o.c.scan_id == scan_id, o.c.shard == shard)
        .where(sa.or_(o.c.target_index >= watermark, o.c.target_index.is_(None)))
    ).all()
    return int(watermark), {(a, p, sni) for a, p, sni in rows}


def started(
    conn: Connection,
    scan_id: int,
    shard: int,
    *,
    attempt: str,
    started_at: datetime,
    agent: str,
    now: datetime,
) -> bool:
    """An agent started ``attempt`` of a shard: it takes the shard over unless the shard is
    settled or a later attempt owns it. Returns False when the shard is settled already."""
    s = t.SCAN_SHARD
    lock_scan(conn, scan_id)
    took = _adopt(conn, scan_id, shard, attempt, started_at, now, agent=agent)
    if took:
        sum_into_scan(conn, scan_id)
        return True
    status = conn.execute(sa.select(s.c.status).where(_where(scan_id, shard))).scalar_one_or_none()
    if status is None:
        raise ValueError(f"scan {scan_id} has no shard {shard}")
    return status not in FINAL


def claim_batch(
    conn: Connection, scan_id: int, shard: int, attempt: str, seq: int, items: int, now: datetime
) -> bool:
    """Record that a batch is being stored; False when it was stored before (a duplicate) or
    its shard is settled (a duplicated task ran it again: nothing of it is needed)."""
    s = t.SCAN_SHARD
    status = conn.execute(sa.select(s.c.status).where(_where(scan_id, shard))).scalar_one_or_none()
    if status is None:
        raise ValueError(f"scan {scan_id} has no shard {shard}")
    if status in FINAL:
        return False
    row = {
        "scan_id": scan_id,
        "shard": shard,
        "attempt": attempt,
        "seq": seq,
        "items": items,
        "ingested_at": now,
    }
    b = t.INGESTED_BATCH
    stmt = insert_for(conn, b).on_conflict_do_nothing().returning(b.c.seq)
    return conn.execute(stmt, row).first() is not None


def apply_progress(
    conn: Connection,
    scan_id: int,
    shard: int,
    *,
    attempt: str,
    attempt_started_at: datetime,
    watermark: int,
    done: int,
    ok: int,
    failed: int,
    now: datetime,
) -> None:
    """Apply an agent's progress snapshot, if its attempt owns (or may take over) the shard."""
    s = t.SCAN_SHARD
    lock_scan(conn, scan_id)
    _adopt(conn, scan_id, shard, attempt, attempt_started_at, now)
    conn.execute(
        sa.update(s)
        .where(_where(scan_id, shard), s.c.attempt == attempt, s.c.status.not_in(FINAL))
        .where(s.c.done <= done)
        .values(
            watermark=sa.case((s.c.watermark < watermark, watermark), else_=s.c.watermark),
            done=sa.func.least(done, s.c.total) if _pg(conn) else sa.func.min(done, s.c.total),
            ok=ok,
            failed=failed,
            updated_at=now,
        )
    )
    sum_into_scan(conn, scan_id)


def _pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _adopt(
    conn: Connection,
    scan_id: int,
    shard: int,
    attempt: str,
    started_at: datetime,
    now: datetime,
    *,
    agent: str | None = None,
) -> bool:
    """Let ``attempt`` own the shard if no attempt does or an earlier-started one does (its
    ``shard_started`` message may arrive after its batches); its counters start again from
    nothing. Returns whether it took the shard."""
    s = t.SCAN_SHARD
    agent_value: Any = s.c.agent if agent is None else t.clean_text(agent)
    took = conn.execute(
        sa.update(s)
        .where(_where(scan_id, shard), s.c.status.not_in(FINAL))
        .where(sa.or_(s.c.attempt.is_(None), s.c.attempt_started_at < started_at))
        .values(
            status="running",
            attempt=attempt,
            attempt_started_at=started_at,
            attempts=s.c.attempts + 1,
            agent=agent_value,
            started_at=sa.func.coalesce(s.c.started_at, started_at),
            watermark=0,
            done=0,
            ok=0,
            failed=0,
            updated_at=now,
        )
    )
    return bool(took.rowcount)


def finish(
    conn: Connection,
    scan_id: int,
    shard: int,
    *,
    attempt: str,
    attempt_started_at: datetime,
    batches: int,
    watermark: int,
    done: int,
    ok: int,
    failed: int,
    error: str | None,
    now: datetime,
) -> ShardFinish:
    """An attempt finished its shard (``error``: it gave up). See the module docstring."""
    s, b = t.SCAN_SHARD, t.INGESTED_BATCH
    # Concurrent finishes of a scan's shards queue on the scan's row, so exactly one of them
    # sees the last shard settle.
    lock_scan(conn, scan_id)
    _adopt(conn, scan_id, shard, attempt, attempt_started_at, now)
    row = conn.execute(sa.select(s.c.status, s.c.attempt).where(_where(scan_id, shard))).first()
    if row is None:
        raise ValueError(f"scan {scan_id} has no shard {shard}")
    if row.status in FINAL or row.attempt != attempt:
        return ShardFinish("stale")
    stored = conn.execute(
        sa.select(sa.func.count())
        .select_from(b)
        .where(b.c.scan_id == scan_id, b.c.shard == shard, b.c.attempt == attempt)
    ).scalar_one()
    if stored < batches:
        return ShardFinish("incomplete")
    state = "failed" if error else "done"
    conn.execute(
        sa.update(s)
        .where(_where(scan_id, shard))
        .values(
            status=state,
            watermark=watermark,
            done=done,
            ok=ok,
            failed=failed,
            error=t.clean_text(error),
            finished_at=now,
            updated_at=now,
        )
    )
    sum_into_scan(conn, scan_id)
    open_shards = conn.execute(
        sa.select(sa.func.count())
        .select_from(s)
        .where(s.c.scan_id == scan_id, s.c.status.not_in(FINAL))
    ).scalar_one()
    return ShardFinish(state, scan_settled=open_shards == 0)


def lock_scan(conn: Connection, scan_id: int) -> None:
    """Lock the scan's row for this transaction (PostgreSQL; SQLite writers hold the database
    lock already). Every shard change of a distributed scan takes it first, so they cannot
    deadlock on each other."""
    r = t.SCAN_RUN
    found = conn.execute(
        sa.select(r.c.id).where(r.c.id == scan_id).with_for_update()
    ).scalar_one_or_none()
    if found is None:
        raise ValueError(f"no scan {scan_id} in the inventory")


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
