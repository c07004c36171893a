"""What the Prometheus collector reads from the inventory on each scrape, in a few set-based
queries that return plain tuples (no ORM objects, no ``CertInfo`` decoding).

Theory of operation
-------------------
A scrape must stay cheap with 100,000 endpoints and a long history, so nothing here grows with
the number of scans an endpoint has seen:

* **endpoints** -- one statement. For every endpoint two correlated subqueries pick, through the
  ``(endpoint_id, observed_at, id)`` index, its latest observation (for ``up`` and the failure
  status) and its latest observation that presented a chain (for the leaf and "last seen").
  Each is one backward index probe per endpoint, whatever the history. The leaf's columns come
  by joining that observation's position-0 link to ``certificate``. Times are converted to
  epoch seconds in SQL and certificate text is cut to :data:`TEXT_LIMIT` characters there, so a
  crafted megabyte-long subject never leaves the database.
* **problems** -- the open findings that say a certificate failed verification or parsing
  (:data:`PROBLEM_KINDS`), with their endpoint.
* **findings** -- open findings counted by ``(kind, severity)`` in SQL.
* **scans** -- the latest finished scan run of each job (the spec's ``job``).
* **progress** -- the latest scan of each job, running or not (the one started last, the
  highest id): its status, total and done.
* **presented** -- the other certificates of each endpoint's latest chain
  (:mod:`scanner.inventory.presented`).
* **shard states** -- the latest *sharded* scan of each job (again the one started last,
  whatever its status: while a distributed scan runs it is that one, after it the one that
  ran last) and how many of its shards are in each state, counted in SQL.

All of them run in ONE read transaction, so a scrape never mixes two states of a sweep that is
writing at the same time: ``REPEATABLE READ`` on PostgreSQL, an explicit deferred ``BEGIN`` on
SQLite (pysqlite would otherwise run each SELECT in its own implicit snapshot).

"Latest" means the order ``(observed_at, id)``, as everywhere in ``scanner.inventory.read``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from scanner.errors import StoreError
from scanner.inventory import read as store_read
from scanner.inventory import shards as store_shards
from scanner.inventory import tables as t
from scanner.inventory.presented import PresentedRow, read_presented
from scanner.inventory.read import CHAIN_STATUSES, ScanRun
from scanner.inventory.shards import SHARD_STATUSES

__all__ = [
    "PROBLEM_KINDS",
    "TEXT_LIMIT",
    "EndpointRow",
    "FindingCount",
    "MetricsSnapshot",
    "ProblemRow",
    "ScanProgress",
    "ShardStates",
    "read",
    "read_snapshot",
]

#: Finding kinds that mean "this certificate fails verification or could not be parsed": the
#: reasons a verifying prober would drop the certificate's series. certscan keeps the series and
#: reports these beside them.
PROBLEM_KINDS: tuple[str, ...] = (
    "unparsable_certificate",
    "expired",
    "not_yet_valid",
    "self_signed",
    "untrusted_root",
    "incomplete_chain",
    "hostname_mismatch",
    "revoked",
)
#: Certificate text columns are cut to this many characters in SQL (labels are cut shorter).
TEXT_LIMIT = 256


class EndpointRow(NamedTuple):
    """One endpoint as a scrape sees it. ``sni`` is '' when none is sent."""

    address: str
    port: int
    sni: str
    status: str  # the latest observation's status ("ok", "client_cert_required", a failure)
    last_seen: float | None  # epoch seconds of the latest observation with a chain; None: never
    sha256: str | None  # that observation's leaf; None when the endpoint never presented one
    not_before: float | None  # epoch seconds; None without a leaf or when it has none
    not_after: float | None
    parse_error: bool  # the leaf could not be loaded as a certificate at all
    subject_cn: str | None  # at most TEXT_LIMIT characters, as are the next four
    issuer_cn: str | None
    serial: str | None
    key_type: str | None
    key_bits: int | None
    signature_hash: str | None
    #: epoch seconds: the next_update of that observation's staple answer about the leaf
    ocsp_next_update: float | None = None
    #: The TLS version, cipher and key exchange group of that observation (cut to TEXT_LIMIT);
    #: None without one, or when not recorded.
    tls_version: str | None = None
    cipher: str | None = None
    group: str | None = None


class ProblemRow(NamedTuple):
    """An open finding of a :data:`PROBLEM_KINDS` kind. ``sha256`` '' for an endpoint-wide one."""

    address: str
    port: int
    sni: str
    sha256: str
    kind: str


class FindingCount(NamedTuple):
    kind: str
    severity: str
    total: int  # open findings of this kind and severity


class ScanProgress(NamedTuple):
    """The latest scan of a job (``job`` None: a plain sweep), running or not."""

    job: str | None
    scan_id: int
    status: str
    total: int
    done: int


class ShardStates(NamedTuple):
    """The latest sharded scan of a job and its shards per state (every state of
    ``scanner.inventory.shards.SHARD_STATUSES``, 0 when none)."""

    job: str | None
    scan_id: int
    states: dict[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSnapshot:
    """Everything one scrape reports, read in one transaction."""

    endpoints: list[EndpointRow]  # every endpoint with at least one observation
    problems: list[ProblemRow]
    findings: list[FindingCount]  # open findings only
    #: The latest finished scan of each job, newest first: ``(job, scan)``. The job is the
    #: ``job`` entry of the scan's spec (``certscan serve`` jobs), ``None`` for a plain sweep.
    scans: list[tuple[str | None, ScanRun]]
    #: The latest scan of each job, running or not, newest first.
    progress: list[ScanProgress] = field(default_factory=list)
    #: The latest sharded scan of each job, newest first.
    shard_states: list[ShardStates] = field(default_factory=list)
    #: Every certificate of each endpoint's latest chain beyond its leaf (intermediates, the
    #: leaves and intermediates of ``--all-certs`` chains).
    presented: list[PresentedRow] = field(default_factory=list)

    @property
    def scan(self) -> ScanRun | None:
        """The latest finished scan of any job."""
        return self.scans[0][1] if self.scans else None


def _epoch(column: Any) -> Any:
    """``column`` (a UTCDateTime) as epoch seconds, computed by the database."""
    return sa.cast(sa.extract("epoch", column), sa.Float)


def _cut(column: Any) -> Any:
    return sa.func.substr(column, 1, TEXT_LIMIT)


def _latest_observation(e: sa.Table, *, with_chain: bool) -> Any:
    o = t.OBSERVATION
    query = sa.select(o.c.id).where(o.c.endpoint_id == e.c.id)
    if with_chain:
        query = query.where(o.c.status.in_(CHAIN_STATUSES))
    return (
        query.order_by(o.c.endpoint_id.desc(), o.c.observed_at.desc(), o.c.id.desc())
        .limit(1)
        .correlate(e)
        .scalar_subquery()
    )


def _endpoints_query() -> sa.Select[Any]:
    e, o, oc, c = t.ENDPOINT, t.OBSERVATION, t.OBSERVATION_CERTIFICATE, t.CERTIFICATE
    # Evaluated once: inlined, PostgreSQL runs each subquery again for every join on its column
    # (SQLite 3.35+ knows MATERIALIZED too, but older ones in supported distributions do not).
    picks = (
        sa.select(
            e.c.address,
            e.c.port,
            e.c.sni,
            _latest_observation(e, with_chain=False).label("latest_id"),
            _latest_observation(e, with_chain=True).label("chain_id"),
        )
        .cte("picks")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    latest = o.alias("latest")
    chained = o.alias("chained")
    return (
        sa.select(
            picks.c.address,
            picks.c.port,
            picks.c.sni,
            latest.c.status,
            _epoch(chained.c.observed_at),
            c.c.sha256,
            _epoch(c.c.not_before),
            _epoch(c.c.not_after),
            c.c.error.is_not(None),
            _cut(c.c.subject_cn),
            _cut(c.c.issuer_cn),
            _cut(c.c.serial),
            _cut(c.c.key_type),
            c.c.key_bits,
            _cut(c.c.signature_hash),
            _epoch(chained.c.ocsp_next_update),
            _cut(chained.c.tls_version),
            _cut(chained.c.cipher),
            _cut(chained.c.tls_group),
        )
        .select_from(picks)
        .join(latest, latest.c.id == picks.c.latest_id)
        .outerjoin(chained, chained.c.id == picks.c.chain_id)
        .outerjoin(oc, sa.and_(oc.c.observation_id == picks.c.chain_id, oc.c.position == 0))
        .outerjoin(c, c.c.sha256 == oc.c.sha256)
    )


def read(conn: Connection) -> MetricsSnapshot:
    """The snapshot, read inside the transaction ``conn`` holds (see :func:`read_snapshot`)."""
    e, f, s = t.ENDPOINT, t.FINDING, t.SCAN_RUN
    endpoints = [
        EndpointRow(a, p, sni, st, seen, sha, nb, na, bool(bad), *rest)
        for a, p, sni, st, seen, sha, nb, na, bad, *rest in conn.execute(_endpoints_query())
    ]
    open_findings = f.c.resolved_at.is_(None)
    problems = [
        ProblemRow(a, p, sni, sha or "", kind)
        for a, p, sni, sha, kind in conn.execute(
            sa.select(e.c.address, e.c.port, e.c.sni, f.c.sha256, f.c.kind)
            .join_from(f, e, f.c.endpoint_id == e.c.id)
            .where(open_findings, f.c.kind.in_(PROBLEM_KINDS))
        )
    ]
    findings = [
        FindingCount(kind, severity, int(count))
        for kind, severity, count in conn.execute(
            sa.select(f.c.kind, f.c.severity, sa.func.count())
            .where(open_findings)
            .group_by(f.c.kind, f.c.severity)
        )
    ]
    rows = conn.execute(
        sa.select(s)
        .where(s.c.status == "finished", s.c.finished_at.is_not(None))
        .order_by(s.c.finished_at.desc(), s.c.id.desc())
        .limit(RECENT_SCANS)
    )
    scans: dict[str | None, ScanRun] = {}
    for row in rows:
        run = store_read.scan_run(row)
        scans.setdefault(_job_of(run.spec), run)
    progress, sharded = _latest_scans(conn)
    return MetricsSnapshot(
        endpoints=endpoints,
        problems=problems,
        findings=findings,
        scans=list(scans.items()),
        progress=progress,
        shard_states=sharded,
        presented=read_presented(conn),
    )


def _latest_scans(conn: Connection) -> tuple[list[ScanProgress], list[ShardStates]]:
    """The latest scan and the latest sharded scan of each job (module docstring), among the
    :data:`RECENT_SCANS` started last."""
    s = t.SCAN_RUN
    rows = conn.execute(
        sa.select(s.c.id, s.c.spec, s.c.status, s.c.total, s.c.done, s.c.shards)
        .order_by(s.c.id.desc())
        .limit(RECENT_SCANS)
    )
    progress: dict[str | None, ScanProgress] = {}
    sharded: dict[str | None, int] = {}
    for scan_id, spec, status, total, done, shards in rows:
        job = _job_of(spec)
        progress.setdefault(job, ScanProgress(job, scan_id, status, int(total), int(done)))
        if shards is not None:
            sharded.setdefault(job, scan_id)
    counts = store_shards.counts(conn, list(sharded.values()))
    states = [
        ShardStates(
            job, scan_id, {state: counts.get(scan_id, {}).get(state, 0) for state in SHARD_STATUSES}
        )
        for job, scan_id in sharded.items()
    ]
    return list(progress.values()), states


#: Finished scans looked at for the latest of each job (jobs that have not finished one of the
#: last this many scans drop out of the scan metrics).
RECENT_SCANS = 500


def _job_of(spec: str) -> str | None:
    try:
        data = json.loads(spec)
    except ValueError:
        return None
    job = data.get("job") if isinstance(data, dict) else None
    return job if isinstance(job, str) else None


@contextmanager
def _read_transaction(engine: Engine) -> Iterator[Connection]:
    """One consistent snapshot for several SELECTs (module docstring), rolled back after."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin() as tx:
                # The planner's cost estimate for 100,000 index probes turns JIT on, which
                # costs more than it saves for a query that reads each row once.
                conn.exec_driver_sql("SET LOCAL jit = off")
                yield conn
                tx.rollback()
        return
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("BEGIN")
        try:
            yield conn
        finally:
            with suppress(sa_exc.DBAPIError):
                conn.exec_driver_sql("ROLLBACK")


def read_snapshot(engine: Engine, *, label: str = "inventory") -> MetricsSnapshot:
    """Read a :class:`MetricsSnapshot` from the inventory behind ``engine`` (an
    ``Inventory.engine``). Raises StoreError, naming ``label``, when the database fails."""
    try:
        with _read_transaction(engine) as conn:
            return read(conn)
    except sa_exc.DBAPIError as exc:
        reason = exc.orig if exc.orig is not None else exc
        lines = str(reason).strip().splitlines()
        why = lines[0].strip() if lines else type(reason).__name__
        raise StoreError(f"inventory {label}: cannot read metrics: {why}") from exc
