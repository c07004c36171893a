"""A cheap "has the inventory changed?" marker, for caches of things built from all of it.

Every write that can change what a report shows adds an observation or a scan run, finishes a
scan, or opens or resolves a finding; the marker is those counts and highest ids, read in one
statement of five aggregate subqueries (each an index or table-count read, no join).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from scanner.inventory import tables as t

__all__ = ["change_marker"]


def change_marker(engine: Engine) -> tuple[object, ...]:
    """A tuple that differs whenever the inventory's observations, scans or findings do."""
    o, s, f = t.OBSERVATION, t.SCAN_RUN, t.FINDING
    query = sa.select(
        sa.select(sa.func.max(o.c.id)).scalar_subquery(),
        sa.select(sa.func.max(s.c.id)).scalar_subquery(),
        sa.select(sa.func.count())
        .select_from(s)
        .where(s.c.finished_at.is_not(None))
        .scalar_subquery(),
        sa.select(sa.func.max(f.c.id)).scalar_subquery(),
        sa.select(sa.func.count())
        .select_from(f)
        .where(f.c.resolved_at.is_(None))
        .scalar_subquery(),
    )
    with engine.connect() as conn:
        row = conn.execute(query).one()
    return tuple(row)
