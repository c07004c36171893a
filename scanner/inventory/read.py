"""Reading the inventory: the records :class:`scanner.inventory.store.Inventory` returns, and the
queries
behind its observation listings. Each function runs inside a transaction the caller holds.

"Latest" always means the order ``(observed_at, id)``: the observation that began last, and of
two that began at the same instant the one stored last.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from scanner.inventory import tables as t
from scanner.models import STATUS_CLIENT_CERT_REQUIRED, STATUS_OK, CertInfo

CHAIN_STATUSES = (STATUS_OK, STATUS_CLIENT_CERT_REQUIRED)
IN_CHUNK = 500  # values per IN (...) list: well under every backend's parameter limit
_FAR_FUTURE = datetime.max.replace(tzinfo=UTC)

#: ``(address, port, sni)`` as targets carry it: ``sni`` is None when none is sent.
EndpointKey = tuple[str, int, str | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanRun:
    """One sweep as stored. ``spec`` is the normalised JSON of its command-line targets/options."""

    id: int
    started_at: datetime  # UTC
    finished_at: datetime | None  # UTC; None while running (and after a crash)
    status: str  # "running", "finished", "interrupted" or "failed"
    spec: str
    total: int  # targets in the sweep
    watermark: int  # every target index below it is stored
    done: int  # targets stored: ok + failed
    ok: int  # targets that presented a chain (status ok or client_cert_required)
    failed: int  # targets that did not
    version: str  # the certscan version that started it
    shards: int | None = None  # how many shards; None for a scan that is not sharded


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointRecord:
    """An endpoint with one observation of it and the chain it presented, in presented order."""

    address: str
    port: int
    sni: str | None  # None when no SNI was sent
    status: str  # "ok", "client_cert_required" or a FailureKind value
    error: str | None  # the failure's detail; None for a handshake
    tls_version: str | None  # None for a failure
    cipher: str | None
    alpn: str | None
    observed_at: datetime  # UTC, when the connection began
    scan_id: int
    chain: tuple[CertInfo, ...]  # empty for a failure
    #: Legacy versions the endpoint also accepted when probed; None when not probed (and for
    #: failures and observations stored before schema 2), ``()`` when it accepted none.
    legacy_versions: tuple[str, ...] | None = None
    #: The TCP connection was accepted (always true with a chain); None before schema 2.
    connected: bool | None = None
    #: How TLS started: "tls" (implicit) or the STARTTLS protocol spoken; None for failures
    #: and observations stored before schema 3.
    protocol: str | None = None
    #: The other chains presented when only one key type was offered (``--all-certs``), each
    #: in presented order; ``()`` when none was seen or the probe was not run.
    alt_chains: tuple[tuple[CertInfo, ...], ...] = ()
    #: The OCSP response the server stapled to the handshake, as received; None when none.
    ocsp_staple: bytes | None = None
    #: The chain was read from a hand-built legacy hello's records (``Handshake.legacy_capture``);
    #: None for failures and observations stored before revision 0003_tls_details.
    legacy_capture: bool | None = None
    #: The key exchange group and the server's signature scheme (``Handshake.group``,
    #: ``Handshake.signature_scheme``); None when none was used, not known, or stored before.
    group: str | None = None
    signature_scheme: str | None = None
    #: The chain came with no proof that the server holds its key (``Handshake.key_proven``
    #: false); such a chain drives no hook and counts for no ``key_reuse``.
    key_unproven: bool = False
    #: The endpoint's row id (the cursor of ``Inventory.endpoints_page``); None when unknown.
    endpoint_id: int | None = None

    @property
    def leaf(self) -> CertInfo | None:
        """The first certificate presented, or None."""
        return self.chain[0] if self.chain else None


_SCAN_FIELDS = tuple(f.name for f in fields(ScanRun))
_RECORD_COLUMNS = (
    "status",
    "error",
    "tls_version",
    "cipher",
    "alpn",
    "observed_at",
    "scan_id",
    "connected",
    "protocol",
    "ocsp_staple",
    "legacy_capture",
    "signature_scheme",
)


def chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    """``values`` in slices short enough for one ``IN (...)`` list."""
    for start in range(0, len(values), IN_CHUNK):
        yield values[start : start + IN_CHUNK]


def scan_run(row: sa.Row[Any]) -> ScanRun:
    return ScanRun(**{name: row._mapping[name] for name in _SCAN_FIELDS})


def _newest_first() -> Any:
    """Observations of each endpoint numbered from 1, newest first."""
    o = t.OBSERVATION
    return sa.func.row_number().over(
        partition_by=o.c.endpoint_id, order_by=(o.c.observed_at.desc(), o.c.id.desc())
    )


def endpoints_page(
    conn: Connection, *, after: int, limit: int
) -> tuple[list[EndpointRecord], int | None]:
    """The latest observation of the ``limit`` endpoints whose id follows ``after``, in id
    order, and the cursor of the next page (None on the last). Costs one page, not the
    inventory: the endpoints come from the primary key, their observations from
    ``ix_observation_endpoint_time``."""
    e = t.ENDPOINT
    ids = [
        int(i)
        for (i,) in conn.execute(
            sa.select(e.c.id).where(e.c.id > after).order_by(e.c.id).limit(limit)
        )
    ]
    if not ids:
        return [], None
    records = latest_endpoints(
        conn, scan_id=None, include_failures=True, endpoint_range=(after, ids[-1])
    )
    records.sort(key=lambda r: r.endpoint_id or 0)
    return records, ids[-1] if len(ids) == limit else None


def latest_endpoints(
    conn: Connection,
    *,
    scan_id: int | None,
    include_failures: bool,
    endpoint_range: tuple[int, int] | None = None,
) -> list[EndpointRecord]:
    """See :meth:`scanner.inventory.store.Inventory.latest_endpoints`; ``endpoint_range``
    ``(after, last)``: only the endpoints with ``after < id <= last`` (a page; a range, so that
    PostgreSQL walks ``ix_observation_endpoint_time`` instead of scanning observations)."""
    o = t.OBSERVATION
    if scan_id is None:
        ranking = sa.select(o.c.id, _newest_first().label("rank"))
        if endpoint_range is not None:
            low, high = endpoint_range
            ranking = ranking.where(o.c.endpoint_id > low, o.c.endpoint_id <= high)
        ranked = ranking.subquery()
        chosen = sa.select(ranked.c.id).where(ranked.c.rank == 1)
    else:
        chosen = sa.select(o.c.id).where(o.c.scan_id == scan_id)
    picked = sa.select(o.c.id).where(o.c.id.in_(chosen))
    if not include_failures:
        picked = picked.where(o.c.status.in_(CHAIN_STATUSES))
    records = records_of(conn, picked.subquery())
    records.sort(key=expiry_order)
    return records


def latest_of_scan_batches(
    conn: Connection, scan_id: int, *, size: int, after: int = 0
) -> tuple[list[EndpointRecord], int | None]:
    """The next ``size`` endpoints whose latest observation is scan ``scan_id``'s, failures
    included, in endpoint id order after endpoint id ``after``; with the endpoint id to
    continue after (None: no more). See :meth:`scanner.inventory.store.Inventory.scan_batches`.

    One batch costs one batch, not the inventory: the scan's observations come from
    ``uq_observation_scan_endpoint`` (scan, endpoint) in endpoint order, and "no newer
    observation of that endpoint" is one probe of ``ix_observation_endpoint_time`` each."""
    o = t.OBSERVATION
    newer = o.alias("newer")
    superseded = (
        sa.select(newer.c.id)
        .where(
            newer.c.endpoint_id == o.c.endpoint_id,
            newer.c.endpoint_id > after,  # implied; lets PostgreSQL's merge start at the cursor
            sa.or_(
                newer.c.observed_at > o.c.observed_at,
                sa.and_(newer.c.observed_at == o.c.observed_at, newer.c.id > o.c.id),
            ),
        )
        .exists()
    )
    rows = conn.execute(
        sa.select(o.c.id, o.c.endpoint_id)
        .where(o.c.scan_id == scan_id, o.c.endpoint_id > after, ~superseded)
        .order_by(o.c.endpoint_id)
        .limit(size)
    ).all()
    if not rows:
        return [], None
    ids = [int(i) for i, _ in rows]
    picked = sa.select(o.c.id).where(o.c.id.in_(ids)).subquery()
    return records_of(conn, picked), int(rows[-1][1])


def count_reportable(conn: Connection, scan_id: int | None) -> int:
    """How many endpoints a report shows before any filter: those whose latest observation (or
    whose observation in ``scan_id``) presented a chain or had its connection accepted. One
    count in SQL, through ``ix_observation_endpoint_time``: nothing is judged or decoded."""
    o = t.OBSERVATION
    where = _reportable(scan_id)
    return int(conn.execute(sa.select(sa.func.count()).select_from(o).where(where)).scalar_one())


def _reportable(scan_id: int | None) -> Any:
    """The observations a report shows, as a WHERE clause on ``observation``: the latest of
    every endpoint (or scan ``scan_id``'s) that presented a chain or had its connection
    accepted."""
    o = t.OBSERVATION
    shown = sa.or_(o.c.status.in_(CHAIN_STATUSES), o.c.connected.is_(True))
    if scan_id is not None:
        return sa.and_(o.c.scan_id == scan_id, shown)
    newer = o.alias("newer")
    superseded = (
        sa.select(newer.c.id)
        .where(
            newer.c.endpoint_id == o.c.endpoint_id,
            sa.or_(
                newer.c.observed_at > o.c.observed_at,
                sa.and_(newer.c.observed_at == o.c.observed_at, newer.c.id > o.c.id),
            ),
        )
        .exists()
    )
    return sa.and_(shown, ~superseded)


def leaf_keys(conn: Connection) -> list[tuple[EndpointKey, str, str]]:
    """(endpoint, leaf SHA-256, leaf SPKI SHA-256) of the main and every alternative leaf of
    each endpoint's latest observation: what ``key_reuse`` compares, without loading chains."""
    o, e, oc, ac, c = (
        t.OBSERVATION,
        t.ENDPOINT,
        t.OBSERVATION_CERTIFICATE,
        t.OBSERVATION_ALT_CERTIFICATE,
        t.CERTIFICATE,
    )
    ranked = sa.select(o.c.id, o.c.endpoint_id, _newest_first().label("rank")).subquery()
    latest = sa.select(ranked.c.id, ranked.c.endpoint_id).where(ranked.c.rank == 1).subquery()
    queries = [
        sa.select(e.c.address, e.c.port, e.c.sni, c.c.sha256, c.c.spki_sha256)
        .select_from(latest)
        .join(e, e.c.id == latest.c.endpoint_id)
        .join(link, sa.and_(link.c.observation_id == latest.c.id, link.c.position == 0))
        .join(c, c.c.sha256 == link.c.sha256)
        .where(c.c.spki_sha256.is_not(None))
        for link in (oc, ac)
    ]
    rows = conn.execute(sa.union_all(*queries))
    return [((a, p, sni or None), sha, spki) for a, p, sni, sha, spki in rows]


def records_of(conn: Connection, picked_ids: Any) -> list[EndpointRecord]:
    """The :class:`EndpointRecord` of each observation in ``picked_ids`` (a subquery of
    observation ids), with its chains, in no particular order."""
    o, e, oc, c = t.OBSERVATION, t.ENDPOINT, t.OBSERVATION_CERTIFICATE, t.CERTIFICATE
    observations = (
        sa.select(o, e.c.address, e.c.port, e.c.sni)
        .join_from(o, e, o.c.endpoint_id == e.c.id)
        .join(picked_ids, picked_ids.c.id == o.c.id)
    )
    links = (
        sa.select(oc.c.observation_id, c.c.sha256, c.c.der, c.c.info)
        .join_from(oc, c, oc.c.sha256 == c.c.sha256)
        .join(picked_ids, picked_ids.c.id == oc.c.observation_id)
        .order_by(oc.c.observation_id, oc.c.position)
    )
    ac = t.OBSERVATION_ALT_CERTIFICATE
    alt_links = (
        sa.select(ac.c.observation_id, ac.c.variant, c.c.sha256, c.c.der, c.c.info)
        .join_from(ac, c, ac.c.sha256 == c.c.sha256)
        .join(picked_ids, picked_ids.c.id == ac.c.observation_id)
        .order_by(ac.c.observation_id, ac.c.variant, ac.c.position)
    )
    rows = conn.execute(observations).all()
    chains: dict[int, list[CertInfo]] = {}
    parsed: dict[str, CertInfo] = {}

    def decoded(sha256: str, der: bytes, info: str) -> CertInfo:
        cert = parsed.get(sha256)
        if cert is None:
            cert = parsed[sha256] = t.decode_cert_info(der, sha256, info)
        return cert

    for obs_id, sha256, der, info in conn.execute(links):
        chains.setdefault(obs_id, []).append(decoded(sha256, der, info))
    alts: dict[int, dict[int, list[CertInfo]]] = {}
    for obs_id, variant, sha256, der, info in conn.execute(alt_links):
        alts.setdefault(obs_id, {}).setdefault(variant, []).append(decoded(sha256, der, info))
    records = [
        EndpointRecord(
            address=m["address"],
            port=m["port"],
            sni=m["sni"] or None,
            chain=tuple(chains.get(m["id"], ())),
            alt_chains=tuple(tuple(v) for _, v in sorted(alts.get(m["id"], {}).items())),
            legacy_versions=t.decode_versions(m["legacy_versions"]),
            group=m["tls_group"],
            key_unproven=bool(m.get("key_unproven")),
            endpoint_id=m["endpoint_id"],
            **{name: m[name] for name in _RECORD_COLUMNS},
        )
        for m in (row._mapping for row in rows)
    ]
    return records


def previous_leaves(
    conn: Connection, scan_id: int | None, endpoint_ids: Sequence[int] | None = None
) -> dict[EndpointKey, str]:
    """See :meth:`scanner.inventory.store.Inventory.previous_leaves`; ``endpoint_ids``: only
    those endpoints (row ids; one ``IN`` list, so at most :data:`IN_CHUNK` of them)."""
    o, e, oc = t.OBSERVATION, t.ENDPOINT, t.OBSERVATION_CERTIFICATE
    # The reference observation of each endpoint: its latest, or its one in scan_id.
    if scan_id is None:
        ranking = sa.select(o.c.endpoint_id, o.c.observed_at, o.c.id, _newest_first().label("rank"))
        if endpoint_ids is not None:
            ranking = ranking.where(o.c.endpoint_id.in_(list(endpoint_ids)))
        ranked = ranking.subquery()
        reference = sa.select(ranked.c.endpoint_id, ranked.c.observed_at, ranked.c.id).where(
            ranked.c.rank == 1
        )
    else:
        reference = sa.select(o.c.endpoint_id, o.c.observed_at, o.c.id).where(
            o.c.scan_id == scan_id
        )
        if endpoint_ids is not None:
            reference = reference.where(o.c.endpoint_id.in_(list(endpoint_ids)))
    ref = reference.subquery("ref")
    earlier = sa.or_(
        o.c.observed_at < ref.c.observed_at,
        sa.and_(o.c.observed_at == ref.c.observed_at, o.c.id < ref.c.id),
    )
    # Earlier observations that presented a chain (a leaf at position 0), newest first.
    candidates = (
        sa.select(o.c.endpoint_id, oc.c.sha256, _newest_first().label("rank"))
        .join_from(o, ref, ref.c.endpoint_id == o.c.endpoint_id)
        .join(oc, sa.and_(oc.c.observation_id == o.c.id, oc.c.position == 0))
        .where(earlier)
        .subquery()
    )
    query = (
        sa.select(e.c.address, e.c.port, e.c.sni, candidates.c.sha256)
        .join_from(candidates, e, e.c.id == candidates.c.endpoint_id)
        .where(candidates.c.rank == 1)
    )
    return {(a, p, sni or None): sha256 for a, p, sni, sha256 in conn.execute(query)}


def report_order(conn: Connection, scan_id: int | None) -> Iterator[int]:
    """The observation ids a report shows -- the latest observation of every endpoint (or each
    of scan ``scan_id``'s) with a chain or an accepted connection -- in report order: soonest
    leaf ``not_after`` first (no leaf, or no expiry, last), then by endpoint, as
    :func:`expiry_order` sorts. Bare ids, streamed: the sort runs in the database."""
    o, e, oc, c = t.OBSERVATION, t.ENDPOINT, t.OBSERVATION_CERTIFICATE, t.CERTIFICATE
    where = _reportable(scan_id)
    query = (
        sa.select(o.c.id)
        .join_from(o, e, e.c.id == o.c.endpoint_id)
        .outerjoin(oc, sa.and_(oc.c.observation_id == o.c.id, oc.c.position == 0))
        .outerjoin(c, c.c.sha256 == oc.c.sha256)
        .where(where)
        .order_by(c.c.not_after.is_(None), c.c.not_after, e.c.address, e.c.port, e.c.sni, o.c.id)
    )
    for (obs_id,) in conn.execution_options(yield_per=10_000).execute(query):
        yield int(obs_id)


class Listed(Protocol):
    """What :func:`expiry_order` sorts: an endpoint with the chain it presented."""

    @property
    def address(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def sni(self) -> str | None: ...
    @property
    def chain(self) -> tuple[CertInfo, ...]: ...


def expiry_order(item: Listed) -> tuple[bool, datetime, str, int, str]:
    """Soonest leaf ``not_after`` first (no leaf, or no expiry, last), then by endpoint."""
    leaf = item.chain[0] if item.chain else None
    not_after = leaf.not_after if leaf is not None else None
    return (
        not_after is None,
        not_after or _FAR_FUTURE,
        item.address,
        item.port,
        item.sni or "",
    )
