"""The record of renewal verification: which endpoints a renewal must reach, and whether they
serve the new certificate yet (the ``renewal_endpoint`` table, revision 0004_renewal).

Theory of operation
-------------------
When a hook run reports a renewal, :func:`begin` lists the endpoints that served the old
certificate or its key (one ``pending`` row each) and sets ``hook_run.verify_until``. Each
re-probe goes through :func:`update`: an endpoint serving the new certificate (or, when the
action did not say which, no longer the old one) is ``deployed``; one still serving the old one
is ``not_deployed`` and gets an open ``renewal_not_deployed`` finding (high), resolved when it
is deployed; one that does not answer stays as it was (``attempts`` counts the probes).
``hook_run.endpoints_deployed`` / ``endpoints_total`` keep the "deployed on N of M" figure.
:func:`open_runs` lists the runs to re-probe: some endpoint not yet deployed and the old
certificate not yet expired. Functions take the engine and are synchronous (for
``trio.to_thread.run_sync``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from scanner.inventory import tables as t

PENDING: Final = "pending"
DEPLOYED: Final = "deployed"
NOT_DEPLOYED: Final = "not_deployed"
#: The finding an endpoint still serving the old certificate gets.
NOT_DEPLOYED_KIND: Final = "renewal_not_deployed"

Address = tuple[str, int, str | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class RenewalCheck:
    """One hook run whose renewal is being verified."""

    run_id: int
    hook: str
    old_sha256: str
    new_sha256: str | None  # None when the action did not say (a command hook)
    verify_until: datetime | None
    endpoints: Mapping[Address, str]  # endpoint -> its status


def begin(
    engine: Engine,
    run_id: int,
    endpoints: Iterable[Address],
    *,
    verify_until: datetime,
) -> int:
    """Start verifying run ``run_id`` on ``endpoints``; returns how many there are."""
    rows = [
        {
            "hook_run_id": run_id,
            "address": a,
            "port": p,
            "sni": n or "",
            "status": PENDING,
            "attempts": 0,
        }
        for a, p, n in dict.fromkeys(endpoints)
    ]
    with engine.begin() as conn:
        if rows:
            conn.execute(_insert(conn, t.RENEWAL_ENDPOINT).on_conflict_do_nothing(), rows)
        total = _count(conn, run_id, None)
        h = t.HOOK_RUN
        conn.execute(
            sa.update(h)
            .where(h.c.id == run_id)
            .values(
                verify_until=verify_until,
                endpoints_total=total,
                endpoints_deployed=_count(conn, run_id, DEPLOYED),
            )
        )
    return total


def _insert(conn: Connection, table: sa.Table) -> Any:
    return sqlite.insert(table) if conn.dialect.name == "sqlite" else postgresql.insert(table)


def _count(conn: Connection, run_id: int, status: str | None) -> int:
    r = t.RENEWAL_ENDPOINT
    query = sa.select(sa.func.count()).select_from(r).where(r.c.hook_run_id == run_id)
    if status is not None:
        query = query.where(r.c.status == status)
    return int(conn.execute(query).scalar_one())


def open_runs(engine: Engine, now: datetime) -> list[RenewalCheck]:
    """Runs with an endpoint not yet deployed whose old certificate has not expired (a
    certificate the inventory does not know counts as unexpired)."""
    h, r, c = t.HOOK_RUN, t.RENEWAL_ENDPOINT, t.CERTIFICATE
    pending = sa.select(r.c.hook_run_id).where(r.c.status != DEPLOYED).distinct()
    query = (
        sa.select(h.c.id, h.c.hook, h.c.sha256, h.c.new_sha256, h.c.verify_until, c.c.not_after)
        .outerjoin(c, c.c.sha256 == h.c.sha256)
        .where(h.c.id.in_(pending))
        .order_by(h.c.id)
    )
    with engine.connect() as conn:
        runs = conn.execute(query).all()
        out = []
        for run in runs:
            if run.not_after is not None and run.not_after <= now:
                continue
            rows = conn.execute(
                sa.select(r.c.address, r.c.port, r.c.sni, r.c.status).where(
                    r.c.hook_run_id == run.id
                )
            ).all()
            out.append(
                RenewalCheck(
                    run_id=run.id,
                    hook=run.hook,
                    old_sha256=run.sha256,
                    new_sha256=run.new_sha256,
                    verify_until=run.verify_until,
                    endpoints={(x.address, x.port, x.sni or None): x.status for x in rows},
                )
            )
    return out


def update(
    engine: Engine,
    check: RenewalCheck,
    served: Mapping[Address, str | None],
    *,
    now: datetime,
) -> tuple[int, int]:
    """Record one re-probe of ``check``'s endpoints (``served``: the leaf sha256 each served,
    None when it did not answer) and the ``renewal_not_deployed`` findings; returns
    (deployed, total)."""
    r = t.RENEWAL_ENDPOINT
    still: list[Address] = []
    done: list[Address] = []
    with engine.begin() as conn:
        for address, sha in served.items():
            status = check.endpoints.get(address, PENDING)
            if sha is not None:
                fresh = sha == check.new_sha256 if check.new_sha256 else sha != check.old_sha256
                status = DEPLOYED if fresh else NOT_DEPLOYED
                (done if fresh else still).append(address)
            a, p, n = address
            conn.execute(
                sa.update(r)
                .where(
                    r.c.hook_run_id == check.run_id,
                    r.c.address == a,
                    r.c.port == p,
                    r.c.sni == (n or ""),
                )
                .values(status=status, served_sha256=sha, attempts=r.c.attempts + 1, checked_at=now)
            )
        deployed, total = _count(conn, check.run_id, DEPLOYED), _count(conn, check.run_id, None)
        h = t.HOOK_RUN
        conn.execute(sa.update(h).where(h.c.id == check.run_id).values(endpoints_deployed=deployed))
        message = (
            f"still serves the certificate hook {check.hook} renewed "
            f"(deployed on {deployed} of {total} endpoints)"
        )
        _open_or_resolve(conn, NOT_DEPLOYED_KIND, check.old_sha256, still, done, message, now)
    return deployed, total


def _open_or_resolve(
    conn: Connection,
    kind: str,
    sha256: str,
    still: Sequence[Address],
    done: Sequence[Address],
    message: str,
    now: datetime,
) -> None:
    """Open (or keep open) a ``kind`` finding (high) on ``still``, resolve it on ``done``."""
    f, e, o = t.FINDING, t.ENDPOINT, t.OBSERVATION
    for address, resolve in [*((a, False) for a in still), *((a, True) for a in done)]:
        key = t.endpoint_key(*address)
        row = conn.execute(
            sa.select(e.c.id).where(e.c.address == key[0], e.c.port == key[1], e.c.sni == key[2])
        ).first()
        if row is None:
            continue
        endpoint_id = row.id
        ident = (f.c.endpoint_id == endpoint_id, f.c.kind == kind)
        is_open = (*ident, f.c.sha256 == sha256, f.c.resolved_at.is_(None))
        if resolve:
            conn.execute(sa.update(f).where(*is_open).values(resolved_at=now))
            continue
        scan = conn.execute(
            sa.select(sa.func.max(o.c.scan_id)).where(o.c.endpoint_id == endpoint_id)
        ).scalar_one()
        if scan is None:
            continue
        updated = conn.execute(
            sa.update(f)
            .where(*is_open)
            .values(last_seen=now, message=t.clean_text(message), severity="high")
        )
        if updated.rowcount == 0:
            conn.execute(
                _insert(conn, f).on_conflict_do_nothing(),
                [
                    {
                        "endpoint_id": endpoint_id,
                        "sha256": sha256,
                        "kind": kind,
                        "severity": "high",
                        "message": t.clean_text(message),
                        "first_seen": now,
                        "last_seen": now,
                        "resolved_at": None,
                        "first_scan_id": scan,
                        "last_scan_id": scan,
                    }
                ],
            )


def progress(engine: Engine, run_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """run id -> (endpoints deployed, endpoints total), for the runs being verified."""
    if not run_ids:
        return {}
    h = t.HOOK_RUN
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(h.c.id, h.c.endpoints_deployed, h.c.endpoints_total).where(
                h.c.id.in_(list(run_ids)), h.c.endpoints_total.is_not(None)
            )
        ).all()
    return {r.id: (int(r.endpoints_deployed or 0), int(r.endpoints_total)) for r in rows}


def pending_by_hook(engine: Engine, now: datetime) -> dict[str, int]:
    """hook -> endpoints not yet serving its renewed certificate, over the open runs (the
    ``certscan_renewal_pending_endpoints`` metric)."""
    out: dict[str, int] = {}
    for check in open_runs(engine, now):
        waiting = sum(1 for status in check.endpoints.values() if status != DEPLOYED)
        out[check.hook] = out.get(check.hook, 0) + waiting
    return out


def ari_starts(engine: Engine) -> dict[str, datetime]:
    """sha256 -> the start of the renewal window its CA suggests (``ari_window``)."""
    a = t.ARI_WINDOW
    with engine.connect() as conn:
        rows = conn.execute(sa.select(a.c.sha256, a.c.window_start)).all()
    return {r.sha256: r.window_start for r in rows}


#: The finding a certificate gets when its CA asks for renewal before the policy would.
EARLY_KIND: Final = "ca_requests_early_renewal"


def windows_due(engine: Engine, sha256s: Sequence[str], now: datetime) -> set[str]:
    """Of ``sha256s``, those with no stored window or whose next fetch is due."""
    a = t.ARI_WINDOW
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(a.c.sha256, a.c.next_fetch_at).where(a.c.sha256.in_(list(sha256s)))
        ).all()
    waiting = {r.sha256 for r in rows if r.next_fetch_at > now}
    return set(sha256s) - waiting


def store_window(
    engine: Engine,
    *,
    sha256: str,
    directory: str,
    cert_id: str,
    start: datetime,
    end: datetime,
    explanation_url: str | None,
    next_fetch_at: datetime,
    now: datetime,
    early: bool,
    endpoints: Sequence[Address],
    message: str,
) -> None:
    """Keep the window fetched for ``sha256``, and open (``early``) or resolve its
    ``ca_requests_early_renewal`` finding on ``endpoints``."""
    a = t.ARI_WINDOW
    values = {
        "directory": t.clean_text(directory),
        "cert_id": cert_id,
        "window_start": start,
        "window_end": end,
        "explanation_url": t.clean_text(explanation_url),
        "fetched_at": now,
        "next_fetch_at": next_fetch_at,
    }
    with engine.begin() as conn:
        done = conn.execute(sa.update(a).where(a.c.sha256 == sha256).values(values))
        if done.rowcount == 0:
            conn.execute(sa.insert(a).values({"sha256": sha256, **values}))
        still, gone = (list(endpoints), []) if early else ([], list(endpoints))
        _open_or_resolve(conn, EARLY_KIND, sha256, still, gone, message, now)
