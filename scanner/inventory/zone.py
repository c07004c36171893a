"""The shards of a dispatched scan as ``certscan ingest`` writes them: guarded and idempotent.

Theory of operation
-------------------
Zone agents have no database; ``certscan ingest`` writes for them, and every message may arrive
twice (a duplicated task, a redelivered one after an agent died, a retried publish) or be forged
by a compromised agent. So:

* **Guard** (:func:`guard`): a message may change only a shard *dispatched to a zone* (local
  ``--workers`` shards have none) of a scan that is still ``running``, and only with an attempt
  time between the shard's ``queued_at`` (less :data:`SKEW`) and now (plus :data:`SKEW`).
  Anything else raises :class:`~scanner.inventory.shards.ShardRejected`.
* **Nothing is added up**: a batch is stored once by its natural key ``(scan, shard, attempt,
  seq)`` in ``ingested_batch`` (:func:`claim_batch`); its observations are upserts; progress is
  a snapshot the agent took when it cut the batch, applied only if it belongs to the attempt
  that owns the shard and moves forward (:func:`apply_progress`), and always *capped*
  (:func:`capped`): ``done <= total``, ``ok <= done``, ``failed = done - ok``.
* **Ownership**: an attempt is one run of a shard task; a later-started attempt takes the shard
  over, an earlier one is ignored.
* **Settling**: a shard is done when its owning attempt says so AND every batch it announced is
  stored (:func:`finish`). A finish that arrives before its batches is kept on the shard
  (``announced``, ``pending``) and applied by the batch that completes it (:func:`complete`), so
  nothing waits or retries. A scan is finalised *by state*: whoever sees every shard final
  (:func:`settled_scans`) finalises it, idempotently.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from scanner.inventory import tables as t
from scanner.inventory.schema import insert_for
from scanner.inventory.shards import FINAL, ShardFinish, ShardRejected, lock_scan, sum_into_scan

#: How far an agent's clock may be off the ingester's.
SKEW = timedelta(minutes=10)


def _where(scan_id: int, shard: int) -> Any:
    s = t.SCAN_SHARD
    return sa.and_(s.c.scan_id == scan_id, s.c.shard == shard)


def capped(total: int, watermark: int, done: int, ok: int) -> tuple[int, int, int, int]:
    """An agent's counters made consistent: ``(watermark, done, ok, failed)`` with
    ``done <= total``, ``ok <= done`` and ``ok + failed == done``."""
    done = max(0, min(done, total))
    ok = max(0, min(ok, done))
    return max(0, min(watermark, total)), done, ok, done - ok


def guard(conn: Connection, scan_id: int, shard: int, started_at: datetime, now: datetime) -> int:
    """Check that a zone message may change this shard (module docstring); its ``total``."""
    s, r = t.SCAN_SHARD, t.SCAN_RUN
    row = conn.execute(
        sa.select(r.c.status.label("scan_status"), s.c.zone, s.c.queued_at, s.c.total)
        .join_from(s, r, s.c.scan_id == r.c.id)
        .where(_where(scan_id, shard))
    ).first()
    if row is None:
        raise ShardRejected(f"scan {scan_id} has no shard {shard}")
    if row.zone is None:
        raise ShardRejected(f"scan {scan_id} shard {shard} was not dispatched to a zone")
    if row.scan_status != "running":
        raise ShardRejected(f"scan {scan_id} is {row.scan_status}, not running")
    if not row.queued_at - SKEW <= started_at <= now + SKEW:
        raise ShardRejected(
            f"scan {scan_id} shard {shard}: attempt start {started_at.isoformat()} is outside "
            f"{(row.queued_at - SKEW).isoformat()} .. {(now + SKEW).isoformat()}"
        )
    return int(row.total)


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
    guard(conn, scan_id, shard, started_at, now)
    if _adopt(conn, scan_id, shard, attempt, started_at, now, agent=agent):
        sum_into_scan(conn, scan_id)
        return True
    status = conn.execute(sa.select(s.c.status).where(_where(scan_id, shard))).scalar_one()
    return status not in FINAL


def claim_batch(
    conn: Connection,
    scan_id: int,
    shard: int,
    *,
    attempt: str,
    started_at: datetime,
    seq: int,
    items: int,
    rejected: int,
    now: datetime,
) -> bool:
    """Record that a batch is being stored; False when it was stored before (a duplicate) or
    its shard is settled (a duplicated task ran it again: nothing of it is needed). The
    ``rejected`` outcomes of a batch stored for the first time are counted on the shard."""
    s = t.SCAN_SHARD
    lock_scan(conn, scan_id)
    guard(conn, scan_id, shard, started_at, now)
    status = conn.execute(sa.select(s.c.status).where(_where(scan_id, shard))).scalar_one()
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
    if conn.execute(stmt, row).first() is None:
        return False
    if rejected:
        conn.execute(
            sa.update(s)
            .where(_where(scan_id, shard))
            .values(rejected=sa.func.coalesce(s.c.rejected, 0) + min(rejected, 2**31))
        )
    return True


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
    now: datetime,
) -> None:
    """Apply an agent's progress snapshot (capped), if its attempt owns or may take over the
    shard; then settle the shard if a finish was waiting for this batch."""
    s = t.SCAN_SHARD
    total = guard(conn, scan_id, shard, attempt_started_at, now)
    _adopt(conn, scan_id, shard, attempt, attempt_started_at, now)
    mark, done, ok, failed = capped(total, watermark, done, ok)
    conn.execute(
        sa.update(s)
        .where(_where(scan_id, shard), s.c.attempt == attempt, s.c.status.not_in(FINAL))
        .where(s.c.done <= done)
        .values(
            watermark=sa.case((s.c.watermark < mark, mark), else_=s.c.watermark),
            done=done,
            ok=ok,
            failed=failed,
            updated_at=now,
        )
    )
    complete(conn, scan_id, shard, now)
    sum_into_scan(conn, scan_id)


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
            announced=None,
            pending=None,
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
    error: str | None,
    now: datetime,
) -> ShardFinish:
    """An attempt finished its shard (``error``: it gave up). ``incomplete`` when some of its
    batches are not stored yet: the finish is kept and the last batch applies it."""
    s = t.SCAN_SHARD
    lock_scan(conn, scan_id)
    total = guard(conn, scan_id, shard, attempt_started_at, now)
    _adopt(conn, scan_id, shard, attempt, attempt_started_at, now)
    row = conn.execute(sa.select(s.c.status, s.c.attempt).where(_where(scan_id, shard))).first()
    if row is None or row.status in FINAL or row.attempt != attempt:
        return ShardFinish("stale")
    mark, done, ok, _ = capped(total, watermark, done, ok)
    pending = json.dumps({"watermark": mark, "done": done, "ok": ok, "error": error})
    conn.execute(
        sa.update(s)
        .where(_where(scan_id, shard))
        .values(announced=batches, pending=t.clean_text(pending), updated_at=now)
    )
    state = complete(conn, scan_id, shard, now)
    sum_into_scan(conn, scan_id)
    if state is None:
        return ShardFinish("incomplete")
    return ShardFinish(state, scan_settled=_open_shards(conn, scan_id) == 0)


def complete(conn: Connection, scan_id: int, shard: int, now: datetime) -> str | None:
    """Settle the shard if its owner's finish is kept and every batch it announced is stored;
    the final state (``done``/``failed``), or None when it is not (yet) settled."""
    s, b = t.SCAN_SHARD, t.INGESTED_BATCH
    row = conn.execute(
        sa.select(s.c.status, s.c.attempt, s.c.announced, s.c.pending, s.c.total).where(
            _where(scan_id, shard)
        )
    ).first()
    if row is None or row.status in FINAL or row.pending is None or row.announced is None:
        return None
    stored = conn.execute(
        sa.select(sa.func.count())
        .select_from(b)
        .where(b.c.scan_id == scan_id, b.c.shard == shard, b.c.attempt == row.attempt)
    ).scalar_one()
    if stored < row.announced:
        return None
    kept = json.loads(row.pending)
    mark, done, ok, failed = capped(int(row.total), kept["watermark"], kept["done"], kept["ok"])
    error = kept.get("error")
    state = "failed" if error else "done"
    conn.execute(
        sa.update(s)
        .where(_where(scan_id, shard))
        .values(
            status=state,
            watermark=mark,
            done=done,
            ok=ok,
            failed=failed,
            error=t.clean_text(error),
            pending=None,
            finished_at=now,
            updated_at=now,
        )
    )
    return state


def _open_shards(conn: Connection, scan_id: int) -> int:
    s = t.SCAN_SHARD
    return int(
        conn.execute(
            sa.select(sa.func.count())
            .select_from(s)
            .where(s.c.scan_id == scan_id, s.c.status.not_in(FINAL))
        ).scalar_one()
    )


def settled_scans(conn: Connection) -> list[int]:
    """Running dispatched scans whose every shard is final: to be finalised."""
    s, r = t.SCAN_SHARD, t.SCAN_RUN
    open_shard = (
        sa.select(s.c.shard).where(s.c.scan_id == r.c.id, s.c.status.not_in(FINAL)).exists()
    )
    zoned = sa.select(s.c.shard).where(s.c.scan_id == r.c.id, s.c.zone.is_not(None)).exists()
    rows = conn.execute(
        sa.select(r.c.id).where(r.c.status == "running", zoned, ~open_shard).order_by(r.c.id)
    )
    return [int(i) for (i,) in rows]


def dead_letter(conn: Connection, scan_id: int, shard: int, now: datetime) -> None:
    """Count a message of the shard that ingest gave up storing (it is on the dead-letter
    queue)."""
    s = t.SCAN_SHARD
    conn.execute(
        sa.update(s)
        .where(_where(scan_id, shard))
        .values(dead_letters=sa.func.coalesce(s.c.dead_letters, 0) + 1, updated_at=now)
    )


def requeue(conn: Connection, scan_id: int, shard: int | None, now: datetime) -> list[int]:
    """``scans retry``: put the failed or stuck (queued/running/interrupted) shards of a
    dispatched scan back to ``queued`` (all of them, or ``shard``), reopen the scan if it had
    failed, and return the shards to send again."""
    s, r = t.SCAN_SHARD, t.SCAN_RUN
    lock_scan(conn, scan_id)
    query = sa.select(s.c.shard).where(
        s.c.scan_id == scan_id, s.c.zone.is_not(None), s.c.status != "done"
    )
    if shard is not None:
        query = query.where(s.c.shard == shard)
    chosen = [int(n) for (n,) in conn.execute(query.order_by(s.c.shard))]
    if not chosen:
        return []
    conn.execute(
        sa.update(s)
        .where(s.c.scan_id == scan_id, s.c.shard.in_(chosen))
        .values(
            status="queued",
            attempt=None,
            attempt_started_at=None,
            watermark=0,
            done=0,
            ok=0,
            failed=0,
            error=None,
            announced=None,
            pending=None,
            queued_at=now,
            finished_at=None,
            updated_at=now,
        )
    )
    conn.execute(sa.update(r).where(r.c.id == scan_id).values(status="running", finished_at=None))
    sum_into_scan(conn, scan_id)
    return chosen
