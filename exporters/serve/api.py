"""The HTTP side of ``certscan serve``: an ASGI (Starlette) app over the inventory.

Theory of operation
-------------------
Every route reads the inventory in a worker thread (``trio.to_thread.run_sync``) so the event
loop never waits on the database; ``/healthz`` touches nothing and stays fast while a scrape or
a report is being built. Two :class:`Reader` lanes each own an :class:`Inventory` (which wants
one thread at a time) and a one-slot limiter: one for ``/metrics``, one for everything else, so
a slow scrape never holds up the API and concurrent scrapes queue instead of piling up threads.

No endpoint accepts a scan target: ``POST /api/v1/jobs/{name}/run`` starts a job named in the
config (blackbox_exporter's ``/probe?target=`` is the SSRF hole this avoids), and only with the
bearer token. Errors are JSON ``{"error": "..."}`` with a 4xx/5xx status. Reads are guarded by
:mod:`exporters.serve.guard` (Host names, the optional read token, response headers); the live
report is cached per inventory change (:mod:`exporters.serve.live`).

Scans (``/api/v1/scans``, ``/api/v1/scans/{id}``) carry ``shards`` (None unless the scan is
sharded) and ``shard_states`` (its shards per state: queued, running, done, failed,
interrupted); ``/api/v1/scans/{id}/shards`` lists the shards themselves, so the progress of a
distributed scan is readable where its results are. The shapes are ``certscan scans --json``'s
(:mod:`scanner.cli.scans`).

:class:`ApiState` is mutable on purpose: a SIGHUP reload swaps ``criteria`` and ``tokens``.
A mutating call names the token it came with: deciding a hook run records ``token:NAME``
(``[serve.tokens]``; ``default`` for ``serve.token`` / ``CERTSCAN_API_TOKEN``), never a name
the caller claims.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import prometheus_client
import sqlalchemy as sa
import trio
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from exporters.prometheus import CertscanCollector
from exporters.serve.guard import ReadGuard
from exporters.serve.job_metrics import JobCollector
from exporters.serve.live import LiveReport
from exporters.serve.openapi import openapi_document
from exporters.serve.scheduler import Scheduler
from exporters.snapshot import SnapshotCollector
from reports import assess
from reports.summary import estate, estate_dict
from scanner.errors import CertscanError, StoreError, UsageError
from scanner.inventory import hooks as store_hooks
from scanner.inventory.changes import change_dict, read_changes
from scanner.inventory.read import EndpointRecord, ScanRun
from scanner.inventory.shards import ShardRecord
from scanner.inventory.store import Inventory
from scanner.inventory.views import scan_dict as scans_json
from scanner.inventory.views import shard_dict
from scanner.serialize import cert_to_dict, iso, observed_dict

__all__ = ["ApiState", "Reader", "create_app", "scan_dict"]

T = TypeVar("T")
log = logging.getLogger("certscan.api")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
#: The classic text exposition format (spelled out: older prometheus_client has no constant).
CONTENT_TYPE_PLAIN_0_0_4 = "text/plain; version=0.0.4; charset=utf-8"
#: Most endpoints one page of ``/api/v1/endpoints`` returns.
MAX_LIMIT = 10_000


class Reader:
    """An inventory used from one worker thread at a time (see the module docstring)."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self._limiter = trio.CapacityLimiter(1)

    async def call(self, fn: Callable[[Inventory], T]) -> T:
        return await trio.to_thread.run_sync(fn, self.inventory, limiter=self._limiter)

    @property
    def queued(self) -> int:
        """Calls waiting for the lane (not counting the one running)."""
        return self._limiter.statistics().tasks_waiting

    def close(self) -> None:
        self.inventory.close()


@dataclass(slots=True, kw_only=True)
class ApiState:
    """What the app serves. ``scheduler`` is None when no jobs run (tests, an empty config)."""

    reader: Reader
    metrics_reader: Reader
    criteria: assess.Criteria
    token: str | None = None  # one unnamed token: accepted as "default"
    tokens: Mapping[str, str] = field(default_factory=dict)  # name -> bearer token
    scheduler: Scheduler | None = None
    #: GETs need this bearer token (or ``token``) when set (:mod:`exporters.serve.guard`).
    read_token: str | None = None
    #: Host names answered (IP literals always are); None: no Host check (built by hand).
    allowed_hosts: frozenset[str] | None = None
    live: LiveReport = field(default_factory=LiveReport)
    registry: CollectorRegistry = field(init=False)
    #: ``/metrics`` is served from a snapshot (``exporters.snapshot``); invalidated per scan.
    metrics: SnapshotCollector = field(init=False)

    def __post_init__(self) -> None:
        if self.token is not None and self.token not in self.tokens.values():
            self.tokens = {**self.tokens, "default": self.token}
        self.registry = CollectorRegistry(auto_describe=False)
        self.metrics = SnapshotCollector(CertscanCollector(self.metrics_reader.inventory).collect)
        self.registry.register(self.metrics)
        if self.scheduler is not None:
            self.registry.register(JobCollector(self.scheduler))


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, str(exc.detail))


def scan_dict(run: ScanRun, counts: Mapping[str, int] | None = None) -> dict[str, Any]:
    """A scan as JSON (``shards`` and ``shard_states`` None unless it is sharded): the shape
    ``certscan scans --json`` prints too."""
    return scans_json(run, counts)


def _scans_with_states(inv: Inventory, runs: list[ScanRun]) -> list[dict[str, Any]]:
    counts = inv.shard_counts([r.id for r in runs if r.shards is not None])
    return [scan_dict(r, counts.get(r.id)) for r in runs]


def _scan_id(request: Request) -> int:
    text = str(request.path_params["scan_id"])
    if not text.isdigit() or len(text) > 18:
        raise UsageError(f"scan id must be a positive integer (got {text[:40]!r})")
    return int(text)


def _endpoint(record: EndpointRecord) -> dict[str, Any]:
    out = observed_dict(record)
    out["observed_at"] = iso(record.observed_at)
    out["scan_id"] = record.scan_id
    return out


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise UsageError(f"{name} must be an integer {low}..{high} (got {text[:40]!r})")
    return int(text)


def create_app(state: ApiState) -> Starlette:
    """The ASGI app serving ``state`` (see the module docstring for the routes)."""

    async def metrics(request: Request) -> Response:
        body = await state.metrics_reader.call(
            lambda _inv: prometheus_client.generate_latest(state.registry)
        )
        # the classic 0.0.4 text format: every certscan name is a legacy one, and every
        # Prometheus version (Debian 12 ships 2.42) reads it
        return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        # outside the API lane: a long report read must not make the daemon look unready
        # (the engine is thread-safe; this touches no Inventory state)
        engine = state.reader.inventory.engine
        try:
            await trio.to_thread.run_sync(_ping, engine)
        except sa.exc.SQLAlchemyError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return _error(503, f"inventory {state.reader.inventory.label} unreachable: {reason}")
        return JSONResponse({"status": "ready"})

    async def views(request: Request, flt: assess.ReportFilter) -> tuple[Any, datetime]:
        now = datetime.now(UTC)
        criteria = state.criteria
        found = await state.reader.call(
            lambda inv: assess.read_views(inv, criteria=criteria, now=now)
        )
        return assess.select(found, flt, now=now), now

    async def home(request: Request) -> Response:
        html = await state.live.page(state.reader, state.criteria)
        return Response(html, media_type="text/html; charset=utf-8")

    async def endpoints(request: Request) -> Response:
        limit = _int_param(request, "limit", 1000, 1, MAX_LIMIT)
        if "cursor" in request.query_params:  # keyset pages: each costs one page, not the whole
            cursor = request.query_params["cursor"] or "0"
            if not cursor.isdigit() or len(cursor) > 19:
                raise UsageError(f"cursor must be one this API returned (got {cursor[:40]!r})")
            after = int(cursor)
            page, following = await state.reader.call(
                lambda inv: inv.endpoints_page(after=after, limit=limit)
            )
            return JSONResponse(
                {
                    "endpoints": [_endpoint(r) for r in page],
                    "next_cursor": None if following is None else str(following),
                }
            )
        # Offset pages (the first API): every page reads the whole inventory.
        offset = _int_param(request, "offset", 0, 0, 10**9)
        records, owners = await state.reader.call(
            lambda inv: (inv.latest_endpoints(include_failures=True), inv.owners())
        )
        items = []
        for record in records[offset : offset + limit]:
            item = _endpoint(record)
            owned = owners.get((record.address, record.port, record.sni))
            item["owner"] = None if owned is None else owned.owner
            item["environment"] = None if owned is None else owned.environment
            item["tags"] = [] if owned is None else list(owned.tags)
            items.append(item)
        return JSONResponse({"total": len(records), "offset": offset, "endpoints": items})

    async def certificate(request: Request) -> Response:
        sha256 = str(request.path_params["sha256"])
        if not _SHA256.fullmatch(sha256):
            raise UsageError("sha256 must be 64 hexadecimal digits")
        sha256 = sha256.lower()
        records = await state.reader.call(lambda inv: inv.latest_endpoints(include_failures=True))
        cert, where = None, []
        for record in records:
            # the main chain (chain 0) and the --all-certs chains (1, 2, ...)
            for number, chain in enumerate((record.chain, *record.alt_chains)):
                for position, c in enumerate(chain):
                    if c.sha256 == sha256:
                        cert = c
                        where.append(
                            {
                                "address": record.address,
                                "port": record.port,
                                "sni": record.sni,
                                "position": position,
                                "chain": number,
                            }
                        )
        if cert is None:
            return _error(404, f"no endpoint presents certificate {sha256} in its latest scan")
        return JSONResponse({"certificate": cert_to_dict(cert), "endpoints": where})

    async def findings(request: Request) -> Response:
        q = request.query_params
        severity, window = q.get("severity"), q.get("expiring_within")
        flt = assess.ReportFilter(
            severity=None
            if severity is None
            else assess.parse_severity(severity, option="severity"),
            kinds=assess.parse_kinds(q.getlist("kind"), option="kind"),
            expiring_within=None
            if window is None
            else assess.parse_window(window, option="expiring_within"),
        )
        shown, _ = await views(request, flt)
        out = [
            {
                "address": f.address,
                "port": f.port,
                "sni": f.sni,
                "kind": f.kind,
                "severity": f.severity.label,
                "message": f.message,
                "sha256": f.sha256,
            }
            for view in shown
            for f in view.findings
        ]
        return JSONResponse({"findings": out})

    async def scans(request: Request) -> Response:
        limit = _int_param(request, "limit", 20, 1, 1000)
        listed = await state.reader.call(
            lambda inv: _scans_with_states(inv, inv.scans(limit=limit))
        )
        return JSONResponse({"scans": listed})

    async def scan(request: Request) -> Response:
        scan_id = _scan_id(request)

        def read(inv: Inventory) -> list[dict[str, Any]]:
            run = inv.scan(scan_id)
            return [] if run is None else _scans_with_states(inv, [run])

        found = await state.reader.call(read)
        if not found:
            return _error(404, f"no scan {scan_id}")
        return JSONResponse(found[0])

    async def scan_shards(request: Request) -> Response:
        scan_id = _scan_id(request)

        def read(inv: Inventory) -> tuple[ScanRun | None, list[ShardRecord]]:
            run = inv.scan(scan_id)
            return run, [] if run is None else inv.shards(scan_id)

        run, shards = await state.reader.call(read)
        if run is None:
            return _error(404, f"no scan {scan_id}")
        body = {"scan_id": scan_id, "shards": [shard_dict(s) for s in shards]}
        return JSONResponse(body)

    async def jobs(request: Request) -> Response:
        sched = state.scheduler
        listed = [] if sched is None else [s.as_dict() for s in sched.jobs.values()]
        return JSONResponse({"jobs": listed})

    def identify(request: Request) -> str | None:
        """The name of the bearer token the request carries, or None (every token is
        compared, in constant time each)."""
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        offered = token.strip().encode()
        found = None
        for name, value in state.tokens.items():
            if hmac.compare_digest(offered, value.encode()) and scheme.lower() == "bearer":
                found = name
        return found

    def refused(request: Request, what: str) -> Response | None:
        """The response refusing a mutating call without a right bearer token, else None."""
        if not state.tokens:
            return _error(403, f"{what} is disabled: set serve.token or CERTSCAN_API_TOKEN")
        if identify(request) is None:
            return JSONResponse(
                {"error": "missing or wrong bearer token"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return None

    async def hook_runs(request: Request) -> Response:
        """The newest hook runs, with "deployed on N of M" for renewals being verified."""
        runs = await state.reader.call(lambda inv: store_hooks.history(inv.engine, limit=100))
        listed = []
        for r in runs:
            deployed = None
            if r.endpoints_total is not None:
                done = r.endpoints_deployed or 0
                deployed = {
                    "deployed": done,
                    "total": r.endpoints_total,
                    "line": f"deployed on {done} of {r.endpoints_total} endpoints",
                }
            listed.append(
                {
                    "id": r.id,
                    "hook": r.hook,
                    "sha256": r.sha256,
                    "address": r.address,
                    "port": r.port,
                    "sni": r.sni,
                    "kind": r.kind,
                    "status": r.status,
                    "attempts": r.attempts,
                    "finished_at": iso(r.finished_at),
                    "new_sha256": r.new_sha256,
                    "decided_by": r.decided_by,
                    "deployment": deployed,
                }
            )
        return JSONResponse({"runs": listed})

    async def decide_hook_run(request: Request) -> Response:
        denied = refused(request, "deciding hook runs")
        if denied is not None:
            return denied
        text = str(request.path_params["run_id"])
        if not (text.isascii() and text.isdigit()) or len(text) > 18:
            return _error(400, "hook run id must be a whole number of at most 18 digits")
        run_id = int(text)
        decision = str(request.path_params["decision"])
        if decision not in ("approve", "reject"):
            return _error(404, "use /approve or /reject")
        approve = decision == "approve"
        who = f"token:{identify(request)}"
        now = datetime.now(UTC)
        done = await state.reader.call(
            lambda inv: store_hooks.decide(inv.engine, run_id, approve=approve, by=who, now=now)
        )
        if not done:
            return _error(404, f"no pending hook run {run_id}")
        status = "approved" if approve else "rejected"
        return JSONResponse({"run": run_id, "status": status, "by": who})

    async def run_job(request: Request) -> Response:
        denied = refused(request, "starting jobs")
        if denied is not None:
            return denied
        name = str(request.path_params["name"])
        sched = state.scheduler
        if sched is None or name not in sched.jobs:
            return _error(404, f"no configured job {name[:64]!r}")
        if not sched.trigger(name):
            return _error(409, f"job {name!r} is running")
        return JSONResponse({"job": name, "status": "started"}, status_code=202)

    async def summary(request: Request) -> Response:
        count = _int_param(request, "scans", 10, 1, 1000)
        shown, _ = await views(request, assess.ReportFilter())
        runs = await state.reader.call(lambda inv: inv.scans(limit=count))
        return JSONResponse(estate_dict(estate(shown, runs)))

    async def changes(request: Request) -> Response:
        window = assess.parse_window(request.query_params.get("since", "7d"), option="since")
        start = datetime.now(UTC) - window
        found = await state.reader.call(lambda inv: read_changes(inv.engine, start))
        return JSONResponse({"since": iso(start), "changes": [change_dict(c) for c in found]})

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document())

    routes = [
        Route("/metrics", metrics),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/", home),
        Route("/api/v1/endpoints", endpoints),
        Route("/api/v1/certificates/{sha256}", certificate),
        Route("/api/v1/findings", findings),
        Route("/api/v1/scans", scans),
        Route("/api/v1/scans/{scan_id}", scan),
        Route("/api/v1/scans/{scan_id}/shards", scan_shards),
        Route("/api/v1/jobs", jobs),
        Route("/api/v1/jobs/{name}/run", run_job, methods=["POST"]),
        Route("/api/v1/hooks/runs", hook_runs),
        Route(
            "/api/v1/hooks/runs/{run_id}/{decision:str}",
            decide_hook_run,
            methods=["POST"],
        ),
        Route("/api/v1/summary", summary),
        Route("/api/v1/changes", changes),
        Route("/api/v1/openapi.json", openapi),
    ]
    handlers: Mapping[Any, Any] = {
        HTTPException: _http_error,
        UsageError: _usage_error,
        StoreError: _store_error,
        CertscanError: _store_error,
        Exception: _internal_error,
    }
    app = Starlette(
        routes=routes,
        exception_handlers=dict(handlers),
        middleware=[Middleware(ReadGuard, state=state)],
    )
    app.router.redirect_slashes = False
    return app


def _ping(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1")).scalar_one()


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("internal error", exc_info=exc, extra={"path": request.url.path})
    return _error(500, "internal error (logged)")


async def _usage_error(request: Request, exc: Exception) -> Response:
    return _error(400, str(exc))


async def _store_error(request: Request, exc: Exception) -> Response:
    return _error(503, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
