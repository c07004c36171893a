"""The lifecycle of findings in the inventory: opened, seen again, resolved.

Theory of operation
-------------------
The findings rules (``reports.findings``) are pure: given the latest observations they return
what is wrong *now*. The inventory remembers since when. A finding's identity is
``(endpoint, kind, sha256 or '')``; the ``finding`` table holds at most one open row
(``resolved_at`` NULL) per identity, which a partial unique index enforces.

:func:`record` applies one evaluation in ONE transaction. The caller names the endpoints it
evaluated (the endpoints the scan observed); only their findings can change:

* an open finding that is present again: ``last_seen``, ``last_scan_id``, severity and message
  are updated (an ``expiring`` finding's severity rises as the date nears);
* a present finding with no open row: a new row, ``first_seen`` = ``last_seen`` = now (one that
  was resolved before and came back opens a new row, keeping the earlier episode);
* an open finding of an evaluated endpoint that is absent now: ``resolved_at`` = now.

Findings of endpoints that were not evaluated (a partial sweep, an unreachable host) stay as they
were. The work is a handful of set operations in memory over the evaluated endpoints' open rows,
read with chunked ``IN`` queries, then bulk UPDATE/INSERT statements, so 10,000 endpoints cost
a few dozen round trips rather than tens of thousands. Applying the same evaluation twice
changes nothing but ``last_seen``. Two scanners recording the same endpoint at once cannot open
duplicates: the insert skips rows that the unique index already has.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from scanner.inventory import tables as t
from scanner.inventory.read import EndpointKey, chunks
from scanner.models import Finding, Severity

#: Kinds other parts record (renewal verification, ARI): an evaluation of the rules never
#: resolves them, their recorder does.
EXTERNAL_KINDS = frozenset({"renewal_not_deployed", "ca_requests_early_renewal"})

#: A finding's identity in the table: (endpoint id, kind, sha256 or '').
_Identity = tuple[int, str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class FindingChanges:
    """What one :func:`record` did: findings opened, seen again, and resolved."""

    new: int
    still_open: int
    resolved: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FindingRecord(Finding):
    """A stored finding: the :class:`~reports.model.Finding` fields and its lifecycle."""

    id: int
    first_seen: datetime  # UTC, when an evaluation first reported it (this episode)
    last_seen: datetime  # UTC, the latest evaluation that reported it
    resolved_at: datetime | None  # UTC, the first evaluation that no longer did; None if open
    first_scan_id: int
    last_scan_id: int

    @property
    def finding(self) -> Finding:
        """The plain finding, comparable with what the rules return."""
        return Finding(
            kind=self.kind,
            severity=self.severity,
            message=self.message,
            address=self.address,
            port=self.port,
            sni=self.sni,
            sha256=self.sha256,
        )


def record(
    conn: Connection,
    scan_id: int,
    findings: Sequence[Finding],
    *,
    evaluated: Iterable[EndpointKey],
    now: datetime,
) -> FindingChanges:
    """See :meth:`scanner.inventory.store.Inventory.record_findings`."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"naive datetime {now!r}: certscan stores aware UTC times only")
    s = t.SCAN_RUN
    if conn.execute(sa.select(s.c.id).where(s.c.id == scan_id)).first() is None:
        raise ValueError(f"no scan {scan_id} in the inventory")
    keys = {t.endpoint_key(a, p, sni) for a, p, sni in evaluated}
    wanted = _by_identity(findings, keys)
    ids = _endpoint_ids(conn, keys)
    for key, _, _ in wanted:
        if key not in ids:
            raise ValueError(f"a finding for {key[0]}:{key[1]} whose endpoint is not stored")
    current = {(ids[key], kind, sha): f for (key, kind, sha), f in wanted.items()}
    open_rows = _open_findings(conn, list(ids.values()))

    again = [(fid, current[ident]) for ident, fid in open_rows.items() if ident in current]
    gone = [
        fid
        for ident, fid in open_rows.items()
        if ident not in current and ident[1] not in EXTERNAL_KINDS
    ]
    fresh = [(ident, f) for ident, f in current.items() if ident not in open_rows]
    f = t.FINDING
    if again:
        update = (
            sa.update(f)
            .where(f.c.id == sa.bindparam("b_id"))
            .values(
                severity=sa.bindparam("b_severity"),
                message=sa.bindparam("b_message"),
                last_seen=now,
                last_scan_id=scan_id,
            )
        )
        params = [
            {"b_id": fid, "b_severity": x.severity.label, "b_message": t.clean_text(x.message)}
            for fid, x in again
        ]
        conn.execute(update, params)
    for part in chunks(gone):
        conn.execute(sa.update(f).where(f.c.id.in_(part)).values(resolved_at=now))
    if fresh:
        rows = [_row(ident, x, scan_id, now) for ident, x in fresh]
        insert = sqlite.insert(f) if conn.dialect.name == "sqlite" else postgresql.insert(f)
        conn.execute(insert.on_conflict_do_nothing(), rows)
    return FindingChanges(new=len(fresh), still_open=len(again), resolved=len(gone))


def read(conn: Connection, *, open_only: bool, endpoint: EndpointKey | None) -> list[FindingRecord]:
    """See :meth:`scanner.inventory.store.Inventory.findings`."""
    f, e = t.FINDING, t.ENDPOINT
    query = sa.select(f, e.c.address, e.c.port, e.c.sni).join_from(f, e, f.c.endpoint_id == e.c.id)
    if open_only:
        query = query.where(f.c.resolved_at.is_(None))
    if endpoint is not None:
        address, port, sni = t.endpoint_key(*endpoint)
        query = query.where(e.c.address == address, e.c.port == port, e.c.sni == sni)
    records = [_record(row._mapping) for row in conn.execute(query)]
    # Sorted here, not in SQL: text collation differs between backends (and PostgreSQL locales).
    records.sort(key=_report_order)
    return records


#: Where a page of findings resumes: (severity value, finding id) of the last one shown.
FindingCursor = tuple[int, int]


def read_page(
    conn: Connection,
    *,
    open_only: bool,
    min_severity: Severity | None,
    after: FindingCursor | None,
    limit: int,
) -> tuple[list[FindingRecord], FindingCursor | None]:
    """One page of stored findings, most severe first and, within a severity, in the order they
    were opened (finding id), with the cursor of the next page (None on the last). A page costs
    a page: one keyset query per severity on the primary key, never a sort of every finding."""
    f, e = t.FINDING, t.ENDPOINT
    levels = sorted(
        (s for s in Severity if min_severity is None or s >= min_severity), reverse=True
    )
    out: list[FindingRecord] = []
    for level in levels:
        if after is not None and level > after[0]:
            continue  # shown on earlier pages
        start = after[1] if after is not None and level == after[0] else 0
        query = (
            sa.select(f, e.c.address, e.c.port, e.c.sni)
            .join_from(f, e, f.c.endpoint_id == e.c.id)
            .where(f.c.severity == level.label, f.c.id > start)
            .order_by(f.c.id)
            .limit(limit - len(out))
        )
        if open_only:
            query = query.where(f.c.resolved_at.is_(None))
        out.extend(_record(row._mapping) for row in conn.execute(query))
        if len(out) >= limit:
            last = out[-1]
            return out, (int(last.severity), last.id)
    return out, None


def tally(conn: Connection, *, open_only: bool, min_severity: Severity | None) -> dict[str, int]:
    """``open`` findings, the ``endpoints`` they are on and (with ``open_only`` false) the
    ``resolved`` ones, at or above ``min_severity``: counted in SQL, not in memory."""
    f = t.FINDING
    levels = [s.label for s in Severity if min_severity is None or s >= min_severity]
    scope = f.c.severity.in_(levels)
    is_open = f.c.resolved_at.is_(None)
    opened = conn.execute(
        sa.select(sa.func.count(), sa.func.count(sa.distinct(f.c.endpoint_id))).where(
            scope, is_open
        )
    ).one()
    resolved = 0
    if not open_only:
        resolved = int(
            conn.execute(
                sa.select(sa.func.count()).where(scope, f.c.resolved_at.is_not(None))
            ).scalar_one()
        )
    return {"open": int(opened[0]), "endpoints": int(opened[1]), "resolved": resolved}


def _by_identity(
    findings: Sequence[Finding], keys: set[tuple[str, int, str]]
) -> dict[tuple[tuple[str, int, str], str, str], Finding]:
    """The findings keyed by identity; of two with one identity, the more severe is kept."""
    out: dict[tuple[tuple[str, int, str], str, str], Finding] = {}
    for finding in findings:
        key = t.endpoint_key(finding.address, finding.port, finding.sni)
        if key not in keys:
            raise ValueError(
                f"a {finding.kind!r} finding for {key[0]}:{key[1]}, an endpoint not evaluated"
            )
        ident = (key, t.clean_text(finding.kind) or "", t.clean_text(finding.sha256) or "")
        kept = out.get(ident)
        if kept is None or finding.severity > kept.severity:
            out[ident] = finding
    return out


def _endpoint_ids(
    conn: Connection, keys: set[tuple[str, int, str]]
) -> dict[tuple[str, int, str], int]:
    """The ids of the stored endpoints among ``keys``. Looked up by address, the leading column
    of ``uq_endpoint`` (a row-value ``IN`` is not an index lookup on PostgreSQL), and matched on
    port and SNI here; an address's other endpoints come along and are dropped."""
    e = t.ENDPOINT
    found: dict[tuple[str, int, str], int] = {}
    for part in chunks(sorted({address for address, _, _ in keys})):
        query = sa.select(e.c.id, e.c.address, e.c.port, e.c.sni).where(e.c.address.in_(part))
        for i, a, p, sni in conn.execute(query):
            if (a, p, sni) in keys:
                found[(a, p, sni)] = i
    return found


def _open_findings(conn: Connection, endpoint_ids: Sequence[int]) -> dict[_Identity, int]:
    f = t.FINDING
    found: dict[_Identity, int] = {}
    for part in chunks(endpoint_ids):
        query = sa.select(f.c.id, f.c.endpoint_id, f.c.kind, f.c.sha256).where(
            f.c.resolved_at.is_(None), f.c.endpoint_id.in_(part)
        )
        found.update({(eid, kind, sha or ""): fid for fid, eid, kind, sha in conn.execute(query)})
    return found


def _row(ident: _Identity, finding: Finding, scan_id: int, now: datetime) -> dict[str, object]:
    endpoint_id, kind, sha256 = ident
    return {
        "endpoint_id": endpoint_id,
        "sha256": sha256 or None,
        "kind": kind,
        "severity": finding.severity.label,
        "message": t.clean_text(finding.message),
        "first_seen": now,
        "last_seen": now,
        "resolved_at": None,
        "first_scan_id": scan_id,
        "last_scan_id": scan_id,
    }


def _record(m: sa.RowMapping) -> FindingRecord:
    return FindingRecord(
        kind=m["kind"],
        severity=Severity.parse(m["severity"]),
        message=m["message"],
        address=m["address"],
        port=m["port"],
        sni=m["sni"] or None,
        sha256=m["sha256"],
        id=m["id"],
        first_seen=m["first_seen"],
        last_seen=m["last_seen"],
        resolved_at=m["resolved_at"],
        first_scan_id=m["first_scan_id"],
        last_scan_id=m["last_scan_id"],
    )


def _report_order(r: FindingRecord) -> tuple[int, str, int, str, str, str, datetime, int]:
    return (-r.severity, r.address, r.port, r.sni or "", r.kind, r.sha256 or "", r.first_seen, r.id)
