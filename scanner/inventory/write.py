"""Writing scan results into the inventory: one batch of outcomes, in the caller's transaction.

``scanner.inventory.store.Inventory`` opens the transaction (retrying PostgreSQL deadlocks) and
calls
:func:`store_items` and :func:`advance`; this module is what happens inside it (the steps are in
``scanner.inventory.store``'s module docstring). Every write is keyed: endpoints are upserted on
``(address, port, sni)``, certificates inserted once per SHA-256, observations once per scan and
endpoint, rows written in key order so that concurrent writers cannot deadlock each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from scanner.inventory import read as store_read
from scanner.inventory import shards as store_shards
from scanner.inventory import tables as t
from scanner.inventory.schema import insert_for
from scanner.models import CertInfo, Handshake, Outcome


def store_items(conn: Connection, scan_id: int, batch: Pending, shard: int | None) -> list[Outcome]:
    """Store one batch's endpoints, certificates and observations; return the planned
    outcomes it completed (to be counted: stored now, or never answering and not stored)."""
    # A target that never accepted a connection (refused, unreachable, connect timeout) is
    # only observed when the endpoint is already in the inventory, so that its going away
    # is on record; otherwise it is just counted. A /16 sweep thus stores the few hundred
    # endpoints that answered, not 65,536 rows of "refused".
    live = {k: v for k, v in batch.items.items() if _answered(v[0])}
    quiet = {k: v for k, v in batch.items.items() if k not in live}
    fresh: list[tuple[int, tuple[Outcome, Sequence[CertInfo], int | None]]] = []
    ids = _upsert_endpoints(conn, live) if live else {}
    if quiet:
        ids.update(_existing_endpoints(conn, list(quiet)))
    if ids:
        # A resumed scan re-doing a target keeps the first result (and counts it once).
        stored = _stored_endpoints(conn, scan_id, list(ids.values()))
        fresh = [(ids[k], v) for k, v in batch.items.items() if k in ids and ids[k] not in stored]
    unstored = [v[0] for k, v in quiet.items() if k not in ids and _planned(v[2])]
    fresh_ids = {eid for eid, _ in fresh}
    alts = batch.alts
    fresh_alts = {eid: alts[k] for k, eid in ids.items() if k in alts and eid in fresh_ids}
    extra = [(o, alt) for eid, (o, _, _) in fresh for alt in fresh_alts.get(eid, ())]
    _insert_certificates(conn, [(o, c) for _, (o, c, _) in fresh] + extra)
    inserted = _insert_observations(conn, scan_id, fresh, fresh_alts, shard)
    planned = [o for eid, (o, _, index) in fresh if eid in inserted and _planned(index)]
    return planned + unstored


def advance(
    conn: Connection,
    scan_id: int,
    watermark: int,
    outcomes: Sequence[Outcome],
    shard: int | None,
    now: datetime,
) -> None:
    """Count ``outcomes`` (planned targets just completed) in the scan, and in ``shard``;
    raise the resume watermark."""
    s = t.SCAN_RUN
    ok = sum(isinstance(o, Handshake) for o in outcomes)
    if shard is not None:
        store_shards.advance(conn, scan_id, shard, watermark, len(outcomes), ok, now)
        watermark = 0  # a sharded scan's resume points are its shards'
    result = conn.execute(
        sa.update(s)
        .where(s.c.id == scan_id)
        .values(
            # Capped at the total: a resumed scan may redo targets above the watermark that
            # were counted but, never having answered, not stored.
            done=sa.case(
                (s.c.done + len(outcomes) > s.c.total, s.c.total),
                else_=s.c.done + len(outcomes),
            ),
            ok=s.c.ok + ok,
            failed=sa.case(
                (s.c.failed + (len(outcomes) - ok) > s.c.total - s.c.ok, s.c.total - s.c.ok),
                else_=s.c.failed + (len(outcomes) - ok),
            ),
            watermark=sa.case((s.c.watermark < watermark, watermark), else_=s.c.watermark),
        )
    )
    if result.rowcount != 1:
        raise ValueError(f"no scan {scan_id} in the inventory")


def _upsert_endpoints(
    conn: Connection, batch: Mapping[tuple[str, int, str], tuple[Outcome, Any, Any]]
) -> dict[tuple[str, int, str], int]:
    e = t.ENDPOINT
    rows = [
        {
            "address": a,
            "port": p,
            "sni": sni,
            "first_seen": o.started_at,
            "last_seen": o.started_at,
        }
        for (a, p, sni), (o, _, _) in sorted(batch.items(), key=lambda kv: kv[0])
    ]  # sorted: concurrent writers lock rows in one order, so they cannot deadlock
    insert = insert_for(conn, e)
    later = insert.excluded.last_seen
    stmt = insert.on_conflict_do_update(
        index_elements=[e.c.address, e.c.port, e.c.sni],
        set_={"last_seen": sa.case((later > e.c.last_seen, later), else_=e.c.last_seen)},
    ).returning(e.c.id, e.c.address, e.c.port, e.c.sni)
    return {(a, p, sni): i for i, a, p, sni in conn.execute(stmt, rows)}


def _existing_endpoints(
    conn: Connection, keys: Sequence[tuple[str, int, str]]
) -> dict[tuple[str, int, str], int]:
    """The ids of those endpoints that are already stored (looked up by address, which the
    unique index serves on both back ends; port and SNI matched here)."""
    e = t.ENDPOINT
    wanted = set(keys)
    found: dict[tuple[str, int, str], int] = {}
    for part in store_read.chunks(sorted({k[0] for k in keys})):
        rows = conn.execute(
            sa.select(e.c.id, e.c.address, e.c.port, e.c.sni).where(e.c.address.in_(part))
        )
        for i, a, p, sni in rows:
            if (a, p, sni) in wanted:
                found[(a, p, sni)] = i
    return found


def _stored_endpoints(conn: Connection, scan_id: int, ids: Sequence[int]) -> set[int]:
    o = t.OBSERVATION
    found: set[int] = set()
    for part in store_read.chunks(ids):
        found.update(
            conn.execute(
                sa.select(o.c.endpoint_id).where(o.c.scan_id == scan_id, o.c.endpoint_id.in_(part))
            ).scalars()
        )
    return found


def _insert_certificates(
    conn: Connection, items: Sequence[tuple[Outcome, Sequence[CertInfo]]]
) -> None:
    first: dict[str, tuple[CertInfo, datetime]] = {}
    for outcome, chain in items:
        for info in chain:
            first.setdefault(info.sha256, (info, outcome.started_at))
    stored = known(conn, list(first))
    rows = [t.certificate_row(i, seen) for h, (i, seen) in sorted(first.items()) if h not in stored]
    if rows:
        conn.execute(insert_for(conn, t.CERTIFICATE).on_conflict_do_nothing(), rows)


def _insert_observations(
    conn: Connection,
    scan_id: int,
    fresh: Sequence[tuple[int, tuple[Outcome, Sequence[CertInfo], int | None]]],
    alts: Mapping[int, Sequence[Sequence[CertInfo]]],
    shard: int | None,
) -> set[int]:
    """Insert observations (one per scan and endpoint: a concurrent duplicate is skipped)
    and their chain links; returns the endpoint ids whose observation was inserted."""
    if not fresh:
        return set()
    o = t.OBSERVATION
    rows = [
        t.observation_row(out, eid, scan_id)
        | {"target_index": index if _planned(index) else None, "shard": shard}
        for eid, (out, _, index) in fresh
    ]
    stmt = (
        insert_for(conn, o)
        .on_conflict_do_nothing(index_elements=[o.c.scan_id, o.c.endpoint_id])
        .returning(o.c.id, o.c.endpoint_id)
    )
    observation_ids = {eid: oid for oid, eid in conn.execute(stmt, rows)}
    links = [
        {"observation_id": observation_ids[eid], "position": pos, "sha256": info.sha256}
        for eid, (_, chain, _) in fresh
        if eid in observation_ids
        for pos, info in enumerate(chain)
    ]
    if links:
        conn.execute(sa.insert(t.OBSERVATION_CERTIFICATE), links)
    alt_links = [
        {
            "observation_id": observation_ids[eid],
            "variant": variant,
            "position": pos,
            "sha256": info.sha256,
        }
        for eid, chains in alts.items()
        if eid in observation_ids
        for variant, chain in enumerate(chains, start=1)
        for pos, info in enumerate(chain)
    ]
    if alt_links:
        conn.execute(sa.insert(t.OBSERVATION_ALT_CERTIFICATE), alt_links)
    return set(observation_ids)


# --- reading ----------------------------------------------------------------------------


def known(conn: Connection, sha256s: Sequence[str]) -> set[str]:
    c = t.CERTIFICATE
    found: set[str] = set()
    for part in store_read.chunks(sha256s):
        found.update(conn.execute(sa.select(c.c.sha256).where(c.c.sha256.in_(part))).scalars())
    return found


Row = tuple[Outcome, Sequence[CertInfo], int | None]


@dataclass(frozen=True, slots=True)
class Pending:
    """A batch checked and keyed by endpoint (the first item of an endpoint wins)."""

    items: dict[tuple[str, int, str], Row]
    alts: dict[tuple[str, int, str], Sequence[Sequence[CertInfo]]]

    @classmethod
    def of(
        cls,
        items: Sequence[tuple[Outcome, Sequence[CertInfo]]],
        indices: Sequence[int] | None,
        alt_chains: Sequence[Sequence[Sequence[CertInfo]]] | None,
    ) -> Pending:
        if indices is not None and len(indices) != len(items):
            raise ValueError("indices and items differ in length")
        if alt_chains is not None and len(alt_chains) != len(items):
            raise ValueError("alt_chains and items differ in length")
        batch: dict[tuple[str, int, str], Row] = {}
        alts: dict[tuple[str, int, str], Sequence[Sequence[CertInfo]]] = {}
        for i, (outcome, chain) in enumerate(items):
            presented = outcome.chain if isinstance(outcome, Handshake) else ()
            if len(chain) != len(presented):
                raise ValueError(f"{outcome.target.label()}: parsed chain length != presented")
            key = t.endpoint_key(outcome.target.address, outcome.target.port, outcome.target.sni)
            if key not in batch:
                batch[key] = (outcome, chain, None if indices is None else indices[i])
                if alt_chains is not None and alt_chains[i]:
                    _check_alts(outcome, alt_chains[i])
                    alts[key] = alt_chains[i]
        return cls(batch, alts)


def _planned(index: int | None) -> bool:
    """Is this item a target of the plan (not an endpoint found by SNI discovery)?"""
    return index is None or index >= 0


def _check_alts(outcome: Outcome, alts: Sequence[Sequence[CertInfo]]) -> None:
    presented = outcome.alt_chains if isinstance(outcome, Handshake) else ()
    if [len(c) for c in alts] != [len(c) for c in presented]:
        raise ValueError(f"{outcome.target.label()}: parsed alt_chains != presented")


def _answered(outcome: Outcome) -> bool:
    """Did the target accept a TCP connection (a handshake, or a failure after connecting)?"""
    return isinstance(outcome, Handshake) or outcome.connected
