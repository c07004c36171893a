"""Leaf history: which certificate each endpoint presented, run by run, for the change and
renewal rules (``reports.changes``, ``reports.renewal``).

Theory of operation
-------------------
An endpoint scanned every six hours presents the same leaf hundreds of times between two
renewals; the rules only need the *runs*: each stretch of consecutive observations with one
leaf, with the moment it was first seen. :func:`leaf_runs` asks the database for exactly those,
with a window function (``LAG`` over each endpoint's chain observations in ``(observed_at, id)``
order keeps the rows whose leaf differs from the one before), so an endpoint with a thousand
observations and four renewals costs five rows. Observations without a chain (failures) are not
part of a run: a host that was down for a scan does not split the run of the leaf it serves.

The reference observation of each endpoint is its latest, or its observation in one scan (a
report of that scan): runs start at or before it. At most ``limit`` runs per endpoint are kept,
the newest. Each leaf is decoded from its stored record once, whatever the number of endpoints
serving it. :func:`chains` reads whole chains of chosen observations (the previous chain of an
endpoint whose leaf changed, to judge whether it was trusted).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from scanner.inventory import tables as t
from scanner.inventory.read import CHAIN_STATUSES, EndpointKey, chunks
from scanner.models import CertInfo

__all__ = ["LeafRun", "chains", "leaf_runs"]

#: Runs kept per endpoint: years of renewals of short-lived certificates.
RUN_LIMIT = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class LeafRun:
    """A stretch of consecutive chain observations of one endpoint presenting one leaf.

    ``first_seen`` is when the first observation of the run began (UTC);
    ``observation_id`` and ``scan_id`` name that observation. ``leaf`` is the parsed leaf (it
    may carry ``error`` when it could not be parsed).
    """

    first_seen: datetime
    observation_id: int
    scan_id: int
    leaf: CertInfo


def _chain_rows(scan_id: int | None, endpoint_range: tuple[int, int] | None = None) -> Any:
    """Chain observations (with their leaf) up to each endpoint's reference observation; of
    the endpoints with ``after < id <= last`` only when ``endpoint_range`` is ``(after, last)``
    (a filter on the window's partition key, so each endpoint's runs are unchanged)."""
    o, oc = t.OBSERVATION, t.OBSERVATION_CERTIFICATE
    query = (
        sa.select(
            o.c.endpoint_id,
            o.c.id,
            o.c.observed_at,
            o.c.scan_id,
            oc.c.sha256,
            sa.func.lag(oc.c.sha256)
            .over(partition_by=o.c.endpoint_id, order_by=(o.c.observed_at, o.c.id))
            .label("before"),
        )
        .join_from(o, oc, sa.and_(oc.c.observation_id == o.c.id, oc.c.position == 0))
        .where(o.c.status.in_(CHAIN_STATUSES))
    )
    if endpoint_range is not None:
        low, high = endpoint_range
        query = query.where(o.c.endpoint_id > low, o.c.endpoint_id <= high)
    if scan_id is not None:
        ref = (
            sa.select(o.c.endpoint_id, o.c.observed_at, o.c.id)
            .where(o.c.scan_id == scan_id)
            .subquery("ref")
        )
        query = query.join(ref, ref.c.endpoint_id == o.c.endpoint_id).where(
            sa.or_(
                o.c.observed_at < ref.c.observed_at,
                sa.and_(o.c.observed_at == ref.c.observed_at, o.c.id <= ref.c.id),
            )
        )
    return query.subquery("sightings")


def leaf_runs(
    conn: Connection,
    *,
    scan_id: int | None = None,
    limit: int = RUN_LIMIT,
    endpoint_range: tuple[int, int] | None = None,
) -> dict[EndpointKey, tuple[LeafRun, ...]]:
    """Each endpoint's leaf runs, oldest first (see the module docstring). Endpoints with no
    chain observation are absent; with ``scan_id``, so are those that scan did not observe;
    with ``endpoint_range`` ``(after, last)``, so are those whose id is outside it (a batch
    of a judged sweep reads its own endpoints' runs, not the inventory's)."""
    e, _c = t.ENDPOINT, t.CERTIFICATE
    rows = _chain_rows(scan_id, endpoint_range)
    starts = (
        sa.select(
            rows.c.endpoint_id,
            rows.c.id,
            rows.c.observed_at,
            rows.c.scan_id,
            rows.c.sha256,
            sa.func.row_number()
            .over(
                partition_by=rows.c.endpoint_id,
                order_by=(rows.c.observed_at.desc(), rows.c.id.desc()),
            )
            .label("rank"),
        )
        .where(sa.or_(rows.c.before.is_(None), rows.c.before != rows.c.sha256))
        .subquery("starts")
    )
    query = (
        sa.select(
            e.c.address,
            e.c.port,
            e.c.sni,
            starts.c.id,
            starts.c.observed_at,
            starts.c.scan_id,
            starts.c.sha256,
        )
        .join_from(starts, e, e.c.id == starts.c.endpoint_id)
        .where(starts.c.rank <= limit)
        .order_by(starts.c.endpoint_id, starts.c.observed_at, starts.c.id)
    )
    found = conn.execute(query).all()
    certs = _certificates(conn, {row.sha256 for row in found})
    out: dict[EndpointKey, list[LeafRun]] = {}
    for address, port, sni, obs_id, observed_at, scan, sha256 in found:
        out.setdefault((address, port, sni or None), []).append(
            LeafRun(
                first_seen=_utc(observed_at),
                observation_id=obs_id,
                scan_id=scan,
                leaf=certs[sha256],
            )
        )
    return {key: tuple(runs) for key, runs in out.items()}


def chains(conn: Connection, observation_ids: Iterable[int]) -> dict[int, tuple[CertInfo, ...]]:
    """The chain of each of these observations, in presented order (absent: no chain)."""
    oc = t.OBSERVATION_CERTIFICATE
    ids = sorted(set(observation_ids))
    links: list[tuple[int, str]] = []
    for part in chunks(ids):
        query = (
            sa.select(oc.c.observation_id, oc.c.sha256)
            .where(oc.c.observation_id.in_(part))
            .order_by(oc.c.observation_id, oc.c.position)
        )
        links.extend((obs, sha) for obs, sha in conn.execute(query))
    certs = _certificates(conn, {sha for _, sha in links})
    out: dict[int, list[CertInfo]] = {}
    for obs, sha in links:
        out.setdefault(obs, []).append(certs[sha])
    return {obs: tuple(chain) for obs, chain in out.items()}


def _utc(moment: datetime) -> datetime:
    """The column's type decorator makes times aware UTC; a plain value is taken as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _certificates(conn: Connection, sha256s: Iterable[str]) -> dict[str, CertInfo]:
    c = t.CERTIFICATE
    wanted: Sequence[str] = sorted(set(sha256s))
    out: dict[str, CertInfo] = {}
    for part in chunks(wanted):
        query = sa.select(c.c.sha256, c.c.der, c.c.info).where(c.c.sha256.in_(part))
        for sha256, der, info in conn.execute(query):
            out[sha256] = t.decode_cert_info(der, sha256, info)
    return out
