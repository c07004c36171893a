"""Owners stored per endpoint: who answers for it, the environment, free tags, and the rule of
the ``[owners]`` config section that said so (``reports.owners`` does the matching).

Theory of operation
-------------------
One row per owned endpoint in ``endpoint_owner``. :func:`record` takes the assignment of every
endpoint evaluated (``None``: no rule matched) and makes the table say exactly that for them:
new or changed assignments are written, unchanged ones left alone (their ``assigned_at`` keeps
the moment the current assignment began), and endpoints no rule matches any more lose their
row. Because the assignment is recomputed from the config each time the inventory is judged
(after a sweep, ``certscan owners``), editing the config re-assigns every endpoint without a
rescan. ``tags`` are stored as a JSON list. Every value comes from the operator's config file,
never from a certificate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from scanner.inventory import tables as t
from scanner.inventory.read import EndpointKey

__all__ = ["OwnerAssignment", "read", "record"]


@dataclass(frozen=True, slots=True, kw_only=True)
class OwnerAssignment:
    """An endpoint's owner as the first matching rule gives it. ``environment`` is ``None``
    when the rule names none; ``rule`` is the rule's name (``rule 3`` when it has none)."""

    owner: str
    environment: str | None = None
    tags: tuple[str, ...] = ()
    rule: str


def _endpoint_ids(conn: Connection) -> dict[EndpointKey, int]:
    e = t.ENDPOINT
    rows = conn.execute(sa.select(e.c.id, e.c.address, e.c.port, e.c.sni))
    return {(address, port, sni or None): ident for ident, address, port, sni in rows}


def read(conn: Connection) -> dict[EndpointKey, OwnerAssignment]:
    """Every stored assignment."""
    e, w = t.ENDPOINT, t.ENDPOINT_OWNER
    query = sa.select(
        e.c.address, e.c.port, e.c.sni, w.c.owner, w.c.environment, w.c.tags, w.c.rule
    ).join_from(w, e, e.c.id == w.c.endpoint_id)
    return {
        (address, port, sni or None): OwnerAssignment(
            owner=owner, environment=environment, tags=tuple(json.loads(tags or "[]")), rule=rule
        )
        for address, port, sni, owner, environment, tags, rule in conn.execute(query)
    }


def record(
    conn: Connection, assignments: Mapping[EndpointKey, OwnerAssignment | None], now: datetime
) -> int:
    """Make the stored assignments of these endpoints those given; returns how many rows
    changed. Endpoints not stored in the inventory are ignored."""
    w = t.ENDPOINT_OWNER
    ids = _endpoint_ids(conn)
    stored = read(conn)
    changed = 0
    for key, wanted in assignments.items():
        ident = ids.get(key)
        if ident is None or stored.get(key) == wanted:
            continue
        changed += 1
        conn.execute(sa.delete(w).where(w.c.endpoint_id == ident))
        if wanted is not None:
            conn.execute(
                sa.insert(w).values(
                    endpoint_id=ident,
                    owner=wanted.owner,
                    environment=wanted.environment,
                    tags=json.dumps(list(wanted.tags)),
                    rule=wanted.rule,
                    assigned_at=now,
                )
            )
    return changed
