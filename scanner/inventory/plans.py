"""What each scan was planned from: table ``scan_plan``.

``digest`` is a SHA-256 of the resolved plan's inputs (targets, ports, exclusions and the
addresses every name resolved to), so ``--resume`` can tell that a name resolves differently
now instead of replaying stored positions against another plan. ``task`` is a dispatched scan's
shard task template (JSON, shard 0): ingest rebuilds each shard's plan from it to check what
the agents report, and ``certscan scans retry`` sends it again.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from scanner.inventory import tables as t
from scanner.inventory.schema import insert_for


def save(conn: Connection, scan_id: int, digest: str, task: str | None, now: datetime) -> None:
    """Record (or replace) the plan of ``scan_id``."""
    p = t.SCAN_PLAN
    row = {"scan_id": scan_id, "digest": digest, "task": task, "created_at": now}
    stmt = insert_for(conn, p).values(**row)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[p.c.scan_id], set_={"digest": digest, "task": task}
        )
    )


def load(conn: Connection, scan_id: int) -> tuple[str, str | None] | None:
    """``(digest, task)`` of ``scan_id``, or None when it has no stored plan."""
    p = t.SCAN_PLAN
    row = conn.execute(sa.select(p.c.digest, p.c.task).where(p.c.scan_id == scan_id)).first()
    return None if row is None else (str(row.digest), row.task)
