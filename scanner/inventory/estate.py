"""Reading the estate-wide context of a sweep's findings as bare rows.

Theory of operation
-------------------
Two findings rules compare every endpoint with the others: ``fleet_inconsistent`` (one name and
port served with several leaves, :mod:`reports.fleet`) and ``file_not_deployed`` (a certificate
on disk that the endpoints serving its names do not serve, :mod:`reports.deployed`). Both look at
the *main leaf* of each endpoint's latest observation that presented a chain, and at a handful
of its fields only: its SHA-256, whether it could be read, its validity dates, ``is_ca`` and its
DNS names. Reading whole :class:`~scanner.models.CertInfo` chains for that (DER, JSON of every
field, every intermediate) made the memory of a sweep's judgement grow with the inventory.

:func:`latest_leaves` reads those few columns of the ``certificate`` table instead, one row per
endpoint, streamed (the caller keeps what it needs). The listing columns are exact for what the
rules use -- a SHA-256, ``error`` being NULL or not, two UTC times, a boolean -- except the DNS
names, whose listing column replaces NUL and unencodable characters; so rows carry the exact
``info`` JSON when asked (``with_info``) and :func:`san_dns` reads the names from it.

Each function runs inside a transaction the caller holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from scanner.inventory import tables as t
from scanner.inventory.read import CHAIN_STATUSES, EndpointKey

__all__ = ["FILE_PREFIX", "LeafRow", "endpoint_keys", "latest_leaves", "san_dns"]

#: The address of the endpoints ``certscan import`` stores for certificate files.
FILE_PREFIX = "file:"


@dataclass(frozen=True, slots=True)
class LeafRow:
    """The main leaf of one endpoint's latest observation with a chain, as the estate-wide
    rules need it. ``has_names``: the leaf has at least one DNS name. ``info``: the leaf's
    exact JSON (``certificate.info``) when it was asked for and the leaf has DNS names."""

    address: str
    port: int
    sni: str | None
    status: str
    sha256: str
    error: str | None
    not_before: datetime | None
    not_after: datetime | None
    is_ca: bool | None
    has_names: bool
    info: str | None = None


def latest_leaves(conn: Connection, *, files: bool, with_info: bool = False) -> Iterator[LeafRow]:
    """The main leaf of each endpoint's latest observation, when that observation presented a
    chain (status ``ok`` or ``client_cert_required``): of the certificate files' endpoints
    (``files``) or of the network endpoints (not ``files``). The rows are streamed."""
    o, e, oc, c = t.OBSERVATION, t.ENDPOINT, t.OBSERVATION_CERTIFICATE, t.CERTIFICATE
    ranked = sa.select(
        o.c.id,
        o.c.endpoint_id,
        o.c.status,
        sa.func.row_number()
        .over(partition_by=o.c.endpoint_id, order_by=(o.c.observed_at.desc(), o.c.id.desc()))
        .label("rank"),
    ).subquery()
    latest = (
        sa.select(ranked.c.id, ranked.c.endpoint_id, ranked.c.status)
        .where(ranked.c.rank == 1, ranked.c.status.in_(CHAIN_STATUSES))
        .subquery()
    )
    is_file = e.c.address.startswith(FILE_PREFIX, autoescape=True)
    columns = [
        e.c.address,
        e.c.port,
        e.c.sni,
        latest.c.status,
        c.c.sha256,
        c.c.error,
        c.c.not_before,
        c.c.not_after,
        c.c.is_ca,
        c.c.san_dns.is_not(None).label("has_names"),
    ]
    if with_info:
        columns.append(sa.case((c.c.san_dns.is_not(None), c.c.info), else_=None).label("info"))
    query = (
        sa.select(*columns)
        .select_from(latest)
        .join(e, e.c.id == latest.c.endpoint_id)
        .join(oc, sa.and_(oc.c.observation_id == latest.c.id, oc.c.position == 0))
        .join(c, c.c.sha256 == oc.c.sha256)
        .where(is_file if files else sa.not_(is_file))
    )
    for row in conn.execute(query):
        yield LeafRow(
            address=row.address,
            port=row.port,
            sni=row.sni or None,
            status=row.status,
            sha256=row.sha256,
            error=row.error,
            not_before=row.not_before,
            not_after=row.not_after,
            is_ca=row.is_ca,
            has_names=bool(row.has_names),
            info=row.info if with_info else None,
        )


def san_dns(info: str | None) -> tuple[str, ...]:
    """The exact DNS names of a leaf from its ``certificate.info`` JSON (``()``: none)."""
    if info is None:
        return ()
    return tuple(json.loads(info).get("san_dns") or ())


def endpoint_keys(conn: Connection) -> list[EndpointKey]:
    """Every endpoint with at least one observation, as ``(address, port, sni)`` (``sni`` None
    when none is sent): what assigning owners needs, without reading any chain."""
    e, o = t.ENDPOINT, t.OBSERVATION
    seen = sa.exists().where(o.c.endpoint_id == e.c.id)
    query = sa.select(e.c.address, e.c.port, e.c.sni).where(seen)
    return [(a, p, sni or None) for a, p, sni in conn.execute(query)]
