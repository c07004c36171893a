"""What changed between scans: new and gone endpoints, and certificate changes.

:func:`read_changes` reads, for every endpoint observed since ``since``, its observations in
that window (oldest first) and the last one before it, each with its leaf's sha256; then
:func:`diff_history` (pure) walks each endpoint's history:

* ``new`` -- the endpoint's first observation with a chain is in the window;
* ``gone`` -- it presented a chain, and a later observation in the window found none (it
  failed: ``status`` says how); it is ``back`` when a chain comes again;
* ``certificate_changed`` -- two consecutive chains with different leaves, with the old and new
  sha256, and whether the issuer (``issuer_changed``) and the public key (``key_changed``:
  the SPKI's SHA-256) changed too. A renewal keeps the issuer and usually changes the key.

The read is bounded by the window; certificates are read once per distinct sha256 involved in
a change. All SQL lives here; the diff is separate so it can be tested on plain data.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from scanner.inventory import tables as t
from scanner.inventory.read import CHAIN_STATUSES

__all__ = ["Change", "HistoryRow", "change_dict", "diff_history", "read_changes"]


class HistoryRow(NamedTuple):
    endpoint_id: int
    address: str
    port: int
    sni: str  # '' for none
    observed_at: datetime
    status: str
    sha256: str | None  # the leaf; None without a chain


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One change. ``old``/``new`` are leaf sha256s (None where there is none)."""

    kind: str  # "new", "gone", "back", "certificate_changed"
    address: str
    port: int
    sni: str | None
    at: datetime  # the observation that showed it
    status: str
    old: str | None = None
    new: str | None = None
    issuer_changed: bool | None = None  # certificate_changed only
    key_changed: bool | None = None
    old_issuer: str | None = None
    new_issuer: str | None = None


def diff_history(rows: Iterable[HistoryRow], since: datetime) -> list[Change]:
    """Changes from each endpoint's rows (grouped by endpoint, oldest first; rows before
    ``since`` are context only). Issuer and key fields are filled in by :func:`read_changes`."""
    out: list[Change] = []
    for _, group in groupby(rows, key=lambda r: r.endpoint_id):
        last_chain: str | None = None
        present = False
        for row in group:
            chain = row.status in CHAIN_STATUSES and row.sha256 is not None
            if chain:
                if last_chain is None:
                    _emit(out, "new", row, since, None, row.sha256)
                elif not present:
                    _emit(out, "back", row, since, last_chain, row.sha256)
                if last_chain is not None and row.sha256 != last_chain:
                    _emit(out, "certificate_changed", row, since, last_chain, row.sha256)
                last_chain, present = row.sha256, True
            elif present:
                _emit(out, "gone", row, since, last_chain, None)
                present = False
    return out


def _emit(
    out: list[Change], kind: str, row: HistoryRow, since: datetime, old: str | None, new: str | None
) -> None:
    if row.observed_at >= since:  # earlier rows only set the scene
        out.append(
            Change(
                kind=kind,
                address=row.address,
                port=row.port,
                sni=row.sni or None,
                at=row.observed_at,
                status=row.status,
                old=old,
                new=new,
            )
        )


def _rows(engine: Engine, since: datetime) -> Iterator[HistoryRow]:
    e, o, oc = t.ENDPOINT, t.OBSERVATION, t.OBSERVATION_CERTIFICATE
    recent = sa.select(o.c.endpoint_id).where(o.c.observed_at >= since).distinct().subquery()
    before = (
        sa.select(o.c.id)
        .where(o.c.endpoint_id == e.c.id, o.c.observed_at < since, o.c.status.in_(CHAIN_STATUSES))
        .order_by(o.c.observed_at.desc(), o.c.id.desc())
        .limit(1)
        .correlate(e)
        .scalar_subquery()
    )
    picked = sa.or_(o.c.observed_at >= since, o.c.id == before)
    query = (
        sa.select(e.c.id, e.c.address, e.c.port, e.c.sni, o.c.observed_at, o.c.status, oc.c.sha256)
        .join_from(e, recent, recent.c.endpoint_id == e.c.id)
        .join(o, o.c.endpoint_id == e.c.id)
        .outerjoin(oc, sa.and_(oc.c.observation_id == o.c.id, oc.c.position == 0))
        .where(picked)
        .order_by(e.c.id, o.c.observed_at, o.c.id)
    )
    with engine.connect() as conn:
        for row in conn.execute(query):
            yield HistoryRow(*row)


def read_changes(engine: Engine, since: datetime) -> list[Change]:
    """The changes since ``since`` (module docstring), oldest first."""
    changes = diff_history(list(_rows(engine, since)), since)
    wanted = {c.old for c in changes if c.kind == "certificate_changed"} | {
        c.new for c in changes if c.kind == "certificate_changed"
    }
    facts: dict[str, tuple[str | None, str | None]] = {}
    if wanted:
        c = t.CERTIFICATE
        with engine.connect() as conn:
            for sha, der, info in conn.execute(
                sa.select(c.c.sha256, c.c.der, c.c.info).where(c.c.sha256.in_(sorted(wanted)))
            ):
                cert = t.decode_cert_info(der, sha, info)
                facts[sha] = (cert.issuer, cert.spki_sha256)
    out = []
    for ch in changes:
        if ch.kind == "certificate_changed" and ch.old in facts and ch.new in facts:
            (oi, ok), (ni, nk) = facts[ch.old], facts[ch.new]
            ch = Change(
                kind=ch.kind,
                address=ch.address,
                port=ch.port,
                sni=ch.sni,
                at=ch.at,
                status=ch.status,
                old=ch.old,
                new=ch.new,
                issuer_changed=oi != ni,
                key_changed=ok != nk,
                old_issuer=oi,
                new_issuer=ni,
            )
        out.append(ch)
    out.sort(key=lambda c: c.at)
    return out


def change_dict(change: Change) -> dict[str, Any]:
    """A change as JSON data (times ISO 8601 UTC)."""
    return {
        "kind": change.kind,
        "address": change.address,
        "port": change.port,
        "sni": change.sni,
        "at": change.at.isoformat().replace("+00:00", "Z"),
        "status": change.status,
        "old_sha256": change.old,
        "new_sha256": change.new,
        "issuer_changed": change.issuer_changed,
        "key_changed": change.key_changed,
        "old_issuer": change.old_issuer,
        "new_issuer": change.new_issuer,
    }
