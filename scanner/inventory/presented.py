"""Every certificate an endpoint presented in its latest observation with a chain, beyond the
leaf: the intermediates (and any root it sent) of the main chain, and the chains ``--all-certs``
found (their first certificate is an ``alt_leaf``, the rest intermediates).

One statement, read inside the metrics snapshot's transaction: a correlated subquery per
endpoint picks its latest observation with a chain through the ``(endpoint_id, observed_at, id)``
index (as :mod:`scanner.inventory.metrics` does), then the chain links of that observation are
joined to ``certificate`` for the validity dates. Positions are reduced to a bounded vocabulary
(:data:`POSITIONS`), so a server that sends 50 certificates adds 50 series, never 50 label
values of its own choosing.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from scanner.inventory import tables as t
from scanner.inventory.read import CHAIN_STATUSES

__all__ = ["POSITIONS", "PresentedRow", "read_presented"]

#: The ``position`` label values: the main chain's first certificate, any later one of any
#: chain, and the first certificate of an alternative chain.
POSITIONS: tuple[str, ...] = ("leaf", "intermediate", "alt_leaf")


class PresentedRow(NamedTuple):
    """One certificate beyond the leaf. ``sni`` is '' when none is sent."""

    address: str
    port: int
    sni: str
    position: str  # "intermediate" or "alt_leaf"
    sha256: str
    not_before: float | None  # epoch seconds; None when the certificate has none (unparsable)
    not_after: float | None


def _epoch(column: Any) -> Any:
    return sa.cast(sa.extract("epoch", column), sa.Float)


def _picks() -> Any:
    e, o = t.ENDPOINT, t.OBSERVATION
    chain_id = (
        sa.select(o.c.id)
        .where(o.c.endpoint_id == e.c.id, o.c.status.in_(CHAIN_STATUSES))
        .order_by(o.c.endpoint_id.desc(), o.c.observed_at.desc(), o.c.id.desc())
        .limit(1)
        .correlate(e)
        .scalar_subquery()
    )
    return (
        sa.select(e.c.address, e.c.port, e.c.sni, chain_id.label("chain_id"))
        .cte("presented_picks")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )


def read_presented(conn: Connection) -> list[PresentedRow]:
    """Every non-leaf certificate of every endpoint's latest chain (module docstring)."""
    picks = _picks()
    oc, alt, c = t.OBSERVATION_CERTIFICATE, t.OBSERVATION_ALT_CERTIFICATE, t.CERTIFICATE
    main = sa.select(
        picks.c.address,
        picks.c.port,
        picks.c.sni,
        sa.literal("intermediate").label("position"),
        oc.c.sha256,
    ).join_from(picks, oc, sa.and_(oc.c.observation_id == picks.c.chain_id, oc.c.position > 0))
    other = sa.select(
        picks.c.address,
        picks.c.port,
        picks.c.sni,
        sa.case((alt.c.position == 0, "alt_leaf"), else_="intermediate").label("position"),
        alt.c.sha256,
    ).join_from(picks, alt, alt.c.observation_id == picks.c.chain_id)
    links = sa.union(main, other).subquery("links")
    query = sa.select(
        links.c.address,
        links.c.port,
        links.c.sni,
        links.c.position,
        links.c.sha256,
        _epoch(c.c.not_before),
        _epoch(c.c.not_after),
    ).join_from(links, c, c.c.sha256 == links.c.sha256)
    return [
        PresentedRow(a, int(p), sni or "", pos, sha, nb, na)
        for a, p, sni, pos, sha, nb, na in conn.execute(query)
    ]
