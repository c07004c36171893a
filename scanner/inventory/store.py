"""The inventory: scan runs, endpoints, certificates, observations and the lifecycle of findings,
in SQLite or PostgreSQL.

Theory of operation
-------------------
One writer (the sweep's writer task, through ``trio.to_thread.run_sync``) hands
:meth:`Inventory.record_batch` a few hundred outcomes at a time. Each batch is ONE transaction:

1. advance the scan's counters and watermark (this also checks the scan exists);
2. upsert the endpoints (``INSERT .. ON CONFLICT (address, port, sni) DO UPDATE .. RETURNING``);
3. drop items this scan already stored (a resumed scan re-doing a target keeps the first result
   and does not count it twice);
4. find which certificates are already known with one ``IN`` query and insert only the new ones
   (deduplicated within the batch too; ``ON CONFLICT DO NOTHING`` covers a concurrent scanner);
5. insert the observations (``RETURNING id``) and their chain links, in bulk, with the links
   of any alternative chains (``--all-certs``) in ``observation_alt_certificate``.

An item whose index is negative (``scanner.engine.crew.FOLLOW_UP``: an endpoint found by SNI
discovery, no target of the plan) is stored with a NULL ``target_index`` and left out of the
scan's ``done``/``ok``/``failed`` counts, which count planned targets.

Because the watermark is committed together with exactly the results it covers, a crash,
Ctrl-C or ``kill -9`` loses at most the batch in flight, and ``--resume`` restarts at the
watermark, skipping the targets above it that :meth:`Inventory.resume_scan` reports as stored.
SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed batch survives the process
dying (only an OS crash or power loss may drop the last transactions).

Certificate text is attacker-controlled. The complete ``CertInfo`` is kept as JSON text
(``ensure_ascii``, so NUL and lone surrogates survive as escapes; PostgreSQL ``text`` cannot
hold NUL) and rebuilt from it exactly; the columns used for listing and filtering, and
observation text (error detail, cipher...), have NUL and unencodable characters replaced by
U+FFFD (:func:`scanner.inventory.tables.clean_text`). The DER is stored byte for byte and stays the
source
of truth. Only SQLite and PostgreSQL are supported: the upserts use their ``ON CONFLICT``.

The class keeps the public API in one place; the work lives beside it: writing a batch in
``scanner.inventory.write``, sharded scans in ``scanner.inventory.shards``, opening and migrating
the
schema in ``scanner.inventory.schema``, the read queries and their records in
``scanner.inventory.read``, and the findings lifecycle in ``scanner.inventory.findings``.
"""

from __future__ import annotations

import hashlib
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from scanner import __version__
from scanner.errors import StoreError, UsageError
from scanner.inventory import connect, location
from scanner.inventory import estate as store_estate
from scanner.inventory import findings as store_findings
from scanner.inventory import history as store_history
from scanner.inventory import owners as store_owners
from scanner.inventory import plans as store_plans
from scanner.inventory import read as store_read
from scanner.inventory import schema as store_schema
from scanner.inventory import shards as store_shards
from scanner.inventory import tables as t
from scanner.inventory import write as store_write
from scanner.inventory import zone as store_zone
from scanner.inventory.estate import LeafRow
from scanner.inventory.findings import FindingChanges, FindingCursor, FindingRecord
from scanner.inventory.history import LeafRun
from scanner.inventory.location import db_url, default_db_path
from scanner.inventory.owners import OwnerAssignment
from scanner.inventory.read import EndpointKey, EndpointRecord, ScanRun
from scanner.inventory.shards import ShardFinish, ShardRecord
from scanner.models import CertInfo, Finding, Outcome, Severity

if TYPE_CHECKING:
    from scanner.models import Progress

__all__ = [
    "SCAN_STATUSES",
    "EndpointKey",
    "EndpointRecord",
    "FindingChanges",
    "FindingRecord",
    "Inventory",
    "LeafRun",
    "OwnerAssignment",
    "ScanRun",
    "ShardFinish",
    "ShardRecord",
    "db_url",
    "default_db_path",
]

SCAN_STATUSES = frozenset({"running", "finished", "interrupted", "failed"})
#: PostgreSQL's deadlock_detected and serialization_failure: the transaction may be retried.
_RETRYABLE = frozenset({"40P01", "40001"})
_RETRIES = 5
_T = TypeVar("_T")
_P = TypeVar("_P")


def _now() -> datetime:
    return datetime.now(UTC)


class Inventory:
    """The certscan database. Call it from one thread at a time (any thread)."""

    def __init__(self, url: str) -> None:
        """Open (creating if needed) the inventory at ``url``; a plain path means SQLite."""
        try:
            parsed = sa.make_url(url if location.URL_SCHEME.match(url) else db_url(url or None))
        except (sa_exc.ArgumentError, ValueError):
            raise StoreError(
                "invalid database URL (want a file path or a URL such as "
                "postgresql+psycopg://user@host/db)"
            ) from None
        self._password = parsed.password
        self.label = parsed.render_as_string(hide_password=True)
        self.backend = parsed.get_backend_name()
        if self.backend not in ("sqlite", "postgresql"):
            raise StoreError(f"unsupported database {self.backend!r}: use sqlite or postgresql")
        try:
            self.engine = store_schema.make_engine(parsed)
        except ImportError as exc:  # the postgres extra is not installed: a usage problem
            raise UsageError(f"cannot open inventory {self.label}: {self._reason(exc)}") from exc
        except (sa_exc.SQLAlchemyError, OSError) as exc:
            raise StoreError(f"cannot open inventory {self.label}: {self._reason(exc)}") from exc
        try:
            connect.prepare(self.engine, self.label)
        except (sa_exc.SQLAlchemyError, OSError) as exc:
            self.engine.dispose()
            raise StoreError(f"cannot open inventory {self.label}: {self._reason(exc)}") from exc
        except BaseException:
            self.engine.dispose()
            raise

    def _reason(self, exc: BaseException) -> str:
        """One line saying why, with no SQL, traceback or password."""
        if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
            exc = exc.orig
        lines = str(exc).strip().splitlines()
        text = lines[0].strip() if lines else type(exc).__name__
        if isinstance(exc, ImportError):
            text = f"database driver missing ({text}): pip install 'certscan[postgres]'"
        if self._password:
            text = text.replace(self._password, "***")
        return text

    @contextmanager
    def _begin(self, action: str) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa_exc.DBAPIError as exc:
            raise StoreError(
                f"inventory {self.label}: cannot {action}: {self._reason(exc)}"
            ) from exc

    @contextmanager
    def _snapshot(self, action: str) -> Iterator[Connection]:
        """A read transaction: every SELECT in it sees one snapshot (``read_snapshot``)."""
        try:
            with store_schema.read_snapshot(self.engine) as conn:
                yield conn
        except sa_exc.DBAPIError as exc:
            raise StoreError(
                f"inventory {self.label}: cannot {action}: {self._reason(exc)}"
            ) from exc

    @contextmanager
    def _write(self, action: str) -> Iterator[Connection]:
        """A write transaction. SQLite: ``BEGIN IMMEDIATE`` takes the write lock up front (waiting
        up to the busy timeout) so that two writing processes queue instead of failing when a
        read lock would have to be upgraded. PostgreSQL: a plain transaction; the caller retries
        a deadlock (:meth:`_retrying`)."""
        if self.backend != "sqlite":
            with self._begin(action) as conn:
                yield conn
            return
        try:
            with store_schema.sqlite_immediate(self.engine) as conn:
                yield conn
        except sa_exc.DBAPIError as exc:
            raise StoreError(
                f"inventory {self.label}: cannot {action}: {self._reason(exc)}"
            ) from exc

    def _retrying(self, action: str, work: Callable[[Connection], _T]) -> _T:
        """Run ``work`` in one write transaction, again (a few times) when PostgreSQL aborts it
        as a deadlock or serialization failure -- safe because every write here is an upsert
        or guarded by a natural key."""
        for attempt in range(_RETRIES):
            try:
                with self._write(action) as conn:
                    return work(conn)
            except StoreError as exc:
                orig = getattr(exc.__cause__, "orig", None)
                if getattr(orig, "sqlstate", None) not in _RETRYABLE or attempt + 1 == _RETRIES:
                    raise
                time.sleep(0.01 * 2**attempt)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Inventory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- scans ------------------------------------------------------------------------------

    def start_scan(
        self, *, spec: Mapping[str, object], total: int, shards: int | None = None
    ) -> int:
        """Record a new running scan and return its id (``shards``: a sharded scan, whose
        shards are added with :meth:`add_shards`)."""
        text = t.normalise_spec(spec)
        with self._begin("start a scan") as conn:
            return int(
                conn.execute(
                    sa.insert(t.SCAN_RUN)
                    .values(
                        started_at=_now(),
                        finished_at=None,
                        status="running",
                        spec=text,
                        spec_hash=hashlib.sha256(text.encode()).hexdigest(),
                        total=total,
                        watermark=0,
                        done=0,
                        ok=0,
                        failed=0,
                        version=__version__,
                        shards=shards,
                    )
                    .returning(t.SCAN_RUN.c.id)
                ).scalar_one()
            )

    def find_resumable(self, spec: Mapping[str, object]) -> ScanRun | None:
        """The newest scan with exactly this spec that did not finish, or None."""
        text = t.normalise_spec(spec)
        s = t.SCAN_RUN
        query = (
            sa.select(s)
            .where(s.c.spec_hash == hashlib.sha256(text.encode()).hexdigest())
            .where(s.c.spec == text, s.c.status != "finished")
            .order_by(s.c.id.desc())
            .limit(1)
        )
        with self._begin("read scans") as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else store_read.scan_run(row)

    def resume_scan(self, scan_id: int) -> tuple[int, set[EndpointKey]]:
        """Mark ``scan_id`` running again. Returns its watermark and the targets at or above it
        already stored (all of the scan's stored targets whose index was not recorded)."""
        s, o, e = t.SCAN_RUN, t.OBSERVATION, t.ENDPOINT
        with self._begin("resume a scan") as conn:
            watermark = conn.execute(
                sa.update(s)
                .where(s.c.id == scan_id)
                .values(status="running", finished_at=None)
                .returning(s.c.watermark)
            ).scalar_one_or_none()
            if watermark is None:
                raise StoreError(f"inventory {self.label} has no scan {scan_id}")
            rows = conn.execute(
                sa.select(e.c.address, e.c.port, e.c.sni)
                .join_from(o, e, o.c.endpoint_id == e.c.id)
                .where(o.c.scan_id == scan_id)
                .where(sa.or_(o.c.target_index >= watermark, o.c.target_index.is_(None)))
            ).all()
        return int(watermark), {(a, p, sni or None) for a, p, sni in rows}

    def finish_scan(self, scan_id: int, status: str) -> None:
        """Set the scan's final ``status`` (finished, interrupted or failed)."""
        if status not in SCAN_STATUSES:
            raise ValueError(f"unknown scan status {status!r}")
        s = t.SCAN_RUN
        ended = None if status == "running" else _now()
        with self._begin("finish a scan") as conn:
            conn.execute(
                sa.update(s).where(s.c.id == scan_id).values(status=status, finished_at=ended)
            )

    # --- shards (scanner.inventory.shards) ------------------------------------------------------

    def add_shards(
        self,
        scan_id: int,
        totals: Sequence[int],
        *,
        zone: str | None = None,
        status: str = "queued",
    ) -> None:
        """Give a sharded scan its shards (shard ``i`` holds ``totals[i]`` targets); shards
        that exist are left as they are."""
        with self._begin("add shards") as conn:
            store_shards.add(conn, scan_id, totals, zone=zone, status=status, now=_now())

    def mark_shard(
        self,
        scan_id: int,
        shard: int,
        status: str,
        *,
        agent: str | None = None,
        error: str | None = None,
    ) -> None:
        """Set a local shard's status (running, done, failed, interrupted)."""
        with self._begin("update a shard") as conn:
            store_shards.mark(conn, scan_id, shard, status, now=_now(), agent=agent, error=error)

    def resume_shard(self, scan_id: int, shard: int) -> tuple[int, set[EndpointKey]]:
        """A local shard's watermark and the targets at or above it it already stored."""
        with self._begin("resume a shard") as conn:
            watermark, rows = store_shards.resume(conn, scan_id, shard)
        return watermark, {(a, p, sni or None) for a, p, sni in rows}

    def shard_started(
        self, scan_id: int, shard: int, *, attempt: str, started_at: datetime, agent: str
    ) -> bool:
        """A zone agent started ``attempt`` of a shard (``scanner.inventory.shards``); False when
        the shard is settled already."""
        return self._retrying(
            "start a shard",
            lambda conn: store_zone.started(
                conn,
                scan_id,
                shard,
                attempt=attempt,
                started_at=started_at,
                agent=agent,
                now=_now(),
            ),
        )

    def ingest_batch(
        self,
        scan_id: int,
        shard: int,
        *,
        attempt: str,
        attempt_started_at: datetime,
        seq: int,
        items: Sequence[tuple[Outcome, Sequence[CertInfo]]],
        indices: Sequence[int],
        alt_chains: Sequence[Sequence[Sequence[CertInfo]]] | None,
        progress: Progress,
        rejected: int = 0,
    ) -> bool:
        """Store batch ``seq`` of ``attempt`` of a distributed shard, in ONE transaction; False
        (and nothing changed) when it was stored before. Idempotent: see
        scanner.inventory.zone. ``rejected``: outcomes ingest refused, counted on the shard."""
        batch = store_write.Pending.of(items, indices, alt_chains)

        def work(conn: Connection) -> bool:
            now = _now()
            if not store_zone.claim_batch(
                conn,
                scan_id,
                shard,
                attempt=attempt,
                started_at=attempt_started_at,
                seq=seq,
                items=len(items),
                rejected=rejected,
                now=now,
            ):
                return False
            store_write.store_items(conn, scan_id, batch, shard)
            store_zone.apply_progress(
                conn,
                scan_id,
                shard,
                attempt=attempt,
                attempt_started_at=attempt_started_at,
                watermark=progress.watermark,
                done=progress.done,
                ok=progress.ok,
                now=now,
            )
            return True

        return self._retrying("ingest a batch", work)

    def shard_finished(
        self,
        scan_id: int,
        shard: int,
        *,
        attempt: str,
        attempt_started_at: datetime,
        batches: int,
        progress: Progress,
        error: str | None = None,
    ) -> ShardFinish:
        """``attempt`` finished its shard after ``batches`` batches (``error``: it failed)."""
        return self._retrying(
            "finish a shard",
            lambda conn: store_zone.finish(
                conn,
                scan_id,
                shard,
                attempt=attempt,
                attempt_started_at=attempt_started_at,
                batches=batches,
                watermark=progress.watermark,
                done=progress.done,
                ok=progress.ok,
                error=error,
                now=_now(),
            ),
        )

    def settled_scans(self) -> list[int]:
        """Running dispatched scans whose every shard is final (to finalise)."""
        with self._begin("read shards") as conn:
            return store_zone.settled_scans(conn)

    def dead_letter(self, scan_id: int, shard: int) -> None:
        """Count a message of the shard that ingest gave up storing."""
        with self._write("count a dead letter") as conn:
            store_zone.dead_letter(conn, scan_id, shard, _now())

    def requeue_shards(self, scan_id: int, shard: int | None = None) -> list[int]:
        """Failed or stuck shards of a dispatched scan back to ``queued`` (``scans retry``)."""
        return self._retrying(
            "requeue shards", lambda conn: store_zone.requeue(conn, scan_id, shard, _now())
        )

    def save_plan(self, scan_id: int, digest: str, task: str | None = None) -> None:
        """Keep what the scan was planned from (``scanner.inventory.plans``)."""
        with self._write("store a plan") as conn:
            store_plans.save(conn, scan_id, digest, task, _now())

    def plan(self, scan_id: int) -> tuple[str, str | None] | None:
        """The scan's plan digest and shard task template, or None for a scan without one."""
        with self._begin("read a plan") as conn:
            return store_plans.load(conn, scan_id)

    def shards(self, scan_id: int) -> list[ShardRecord]:
        """The shards of a scan, by number (empty for a scan that is not sharded)."""
        with self._begin("read shards") as conn:
            return store_shards.read(conn, scan_id)

    def shard_counts(self, scan_ids: Sequence[int]) -> dict[int, dict[str, int]]:
        """For each of these scans, how many shards are queued, running, done, failed..."""
        with self._begin("read shards") as conn:
            return store_shards.counts(conn, scan_ids)

    def scan(self, scan_id: int) -> ScanRun | None:
        with self._begin("read scans") as conn:
            row = conn.execute(sa.select(t.SCAN_RUN).where(t.SCAN_RUN.c.id == scan_id)).first()
        return None if row is None else store_read.scan_run(row)

    def scans(self, limit: int = 20) -> list[ScanRun]:
        """The newest ``limit`` scans, newest first."""
        query = sa.select(t.SCAN_RUN).order_by(t.SCAN_RUN.c.id.desc()).limit(limit)
        with self._begin("read scans") as conn:
            return [store_read.scan_run(row) for row in conn.execute(query)]

    def latest_scan(self) -> ScanRun | None:
        """The scan started last (whatever its status), or None in an empty inventory."""
        found = self.scans(limit=1)
        return found[0] if found else None

    # --- writing ----------------------------------------------------------------------------

    def record_batch(
        self,
        scan_id: int,
        items: Sequence[tuple[Outcome, Sequence[CertInfo]]],
        *,
        watermark: int,
        indices: Sequence[int] | None = None,
        alt_chains: Sequence[Sequence[Sequence[CertInfo]]] | None = None,
        shard: int | None = None,
    ) -> None:
        """Store ``items`` (each outcome with its parsed chain, in presented order, empty for a
        failure) and move the scan's watermark to ``watermark``, in ONE transaction.

        ``indices`` (optional) are the items' positions in the scan's target stream; with them
        :meth:`resume_scan` returns only the stored targets above the watermark. For a
        certificate already stored only ``sha256`` is read, so a caller that skipped parsing a
        known certificate may pass ``CertInfo(der=..., sha256=...)``. ``alt_chains`` (optional,
        parallel to ``items``) are the parsed ``Handshake.alt_chains`` of each item. A negative
        index marks a discovered endpoint (module docstring). With ``shard``, the scan is sharded
        (:meth:`add_shards`): indices and ``watermark`` are positions in that shard, and the
        counts go to the shard and the scan.
        """
        batch = store_write.Pending.of(items, indices, alt_chains)

        def work(conn: Connection) -> None:
            s = t.SCAN_RUN
            if conn.execute(sa.select(s.c.id).where(s.c.id == scan_id)).first() is None:
                raise ValueError(f"no scan {scan_id} in the inventory")
            counted = store_write.store_items(conn, scan_id, batch, shard)
            store_write.advance(conn, scan_id, watermark, counted, shard, _now())

        self._retrying("store scan results", work)

    def known_certificates(self, sha256s: Iterable[str]) -> set[str]:
        """Which of these fingerprints are stored already."""
        with self._begin("read certificates") as conn:
            return store_write.known(conn, list(dict.fromkeys(sha256s)))

    def latest_endpoints(
        self, *, scan_id: int | None = None, include_failures: bool = False
    ) -> list[EndpointRecord]:
        """Every endpoint's latest observation (or every observation of ``scan_id``) with its
        chain, soonest leaf ``not_after`` first (no leaf, or no expiry, last). Without
        ``include_failures``, endpoints whose chosen observation is a failure are left out."""
        with self._snapshot("read the inventory") as conn:
            return store_read.latest_endpoints(
                conn, scan_id=scan_id, include_failures=include_failures
            )

    def scan_batches(self, scan_id: int, size: int = 1000) -> Iterator[list[EndpointRecord]]:
        """The endpoints whose latest observation is scan ``scan_id``'s (failures included), in
        batches of at most ``size``, each read in its own transaction: judging a sweep holds one
        batch of chains in memory, not the inventory."""
        after: int | None = 0
        while after is not None:
            start = after
            with self._begin("read the inventory") as conn:
                records, after = store_read.latest_of_scan_batches(
                    conn, scan_id, size=size, after=start
                )
            if records:
                yield records

    def reportable_count(self, scan_id: int | None = None) -> int:
        """How many endpoints ``certscan report`` shows before its filters (every endpoint's
        latest observation, or scan ``scan_id``'s, with a chain or an accepted connection)."""
        with self._begin("read the inventory") as conn:
            return store_read.count_reportable(conn, scan_id)

    def leaf_keys(self) -> list[tuple[EndpointKey, str, str]]:
        """For ``key_reuse``: (endpoint, leaf SHA-256, leaf SPKI SHA-256) of every leaf of every
        endpoint's latest observation (see :func:`scanner.inventory.read.leaf_keys`)."""
        with self._begin("read the inventory") as conn:
            return store_read.leaf_keys(conn)

    def latest_leaves(
        self, pick: Callable[[LeafRow], _P | None], *, files: bool, with_info: bool = False
    ) -> list[_P]:
        """For the estate-wide rules: ``pick`` applied to the main leaf of each endpoint's latest
        observation with a chain, as bare rows (see :func:`scanner.inventory.estate.latest_leaves`),
        of the certificate files (``files``) or of the network endpoints; what it returns, None
        left out. The rows are streamed in one snapshot: only what ``pick`` keeps is held."""
        with self._snapshot("read the inventory") as conn:
            out: list[_P] = []
            for row in store_estate.latest_leaves(conn, files=files, with_info=with_info):
                kept = pick(row)
                if kept is not None:
                    out.append(kept)
            return out

    def endpoints_page(
        self, *, after: int = 0, limit: int = 1000
    ) -> tuple[list[EndpointRecord], int | None]:
        """One page of every endpoint's latest observation, in endpoint order (one snapshot):
        the records and the cursor of the next page (None on the last page)."""
        with self._snapshot("read the inventory") as conn:
            return store_read.endpoints_page(conn, after=after, limit=limit)

    def previous_leaves(self, scan_id: int | None = None) -> dict[EndpointKey, str]:
        """For ``certificate_changed``: each endpoint's leaf SHA-256 in its most recent
        observation WITH a chain that is older than its latest observation (with ``scan_id``:
        older than its observation in that scan; endpoints that scan did not observe are left
        out). Endpoints with no such earlier observation are absent."""
        with self._snapshot("read the inventory") as conn:
            return store_read.previous_leaves(conn, scan_id)

    def previous_leaves_of(
        self, endpoint_ids: Sequence[int], scan_id: int | None = None
    ) -> dict[EndpointKey, str]:
        """:meth:`previous_leaves` of only the endpoints ``endpoint_ids`` (row ids): what one
        batch of a report needs, in one snapshot."""
        out: dict[EndpointKey, str] = {}
        with self._snapshot("read the inventory") as conn:
            for part in store_read.chunks(list(endpoint_ids)):
                out.update(store_read.previous_leaves(conn, scan_id, part))
        return out

    def report_order(self, scan_id: int | None = None) -> array[int]:
        """The observation ids ``certscan report`` shows (every endpoint's latest observation,
        or scan ``scan_id``'s, with a chain or an accepted connection), soonest leaf expiry
        first: 8 bytes an endpoint, read in one snapshot (see
        :func:`scanner.inventory.read.report_order`)."""
        with self._snapshot("read the inventory") as conn:
            return array("q", store_read.report_order(conn, scan_id))

    def observations(self, observation_ids: Sequence[int]) -> list[EndpointRecord]:
        """The records of these observations with their chains (one snapshot), soonest leaf
        expiry first (:func:`~scanner.inventory.read.expiry_order`)."""
        o = t.OBSERVATION
        records: list[EndpointRecord] = []
        with self._snapshot("read the inventory") as conn:
            for part in store_read.chunks(list(observation_ids)):
                picked = sa.select(o.c.id).where(o.c.id.in_(list(part))).subquery()
                records.extend(store_read.records_of(conn, picked))
        records.sort(key=store_read.expiry_order)
        return records

    def leaf_runs(
        self, scan_id: int | None = None, *, endpoint_ids: Sequence[int] | None = None
    ) -> dict[EndpointKey, tuple[LeafRun, ...]]:
        """For the change and renewal rules: each endpoint's leaf runs up to its latest
        observation (or its observation in ``scan_id``), oldest first
        (:mod:`scanner.inventory.history`); only of the endpoints ``endpoint_ids`` (row ids)
        when given."""
        with self._begin("read the inventory") as conn:
            return store_history.leaf_runs(conn, scan_id=scan_id, endpoint_ids=endpoint_ids)

    def endpoint_keys(self) -> list[EndpointKey]:
        """Every endpoint observed at least once, as ``(address, port, sni)``, without its
        observations (see :func:`scanner.inventory.estate.endpoint_keys`)."""
        with self._begin("read the inventory") as conn:
            return store_estate.endpoint_keys(conn)

    def chains(self, observation_ids: Iterable[int]) -> dict[int, tuple[CertInfo, ...]]:
        """The chain each of these observations presented, leaf first (absent: no chain)."""
        with self._begin("read the inventory") as conn:
            return store_history.chains(conn, observation_ids)

    def owners(self) -> dict[EndpointKey, OwnerAssignment]:
        """Every endpoint's stored owner (:mod:`scanner.inventory.owners`); unowned: absent."""
        with self._begin("read owners") as conn:
            return store_owners.read(conn)

    def record_owners(
        self, assignments: Mapping[EndpointKey, OwnerAssignment | None], *, now: datetime
    ) -> int:
        """Store these endpoints' owners (``None``: unowned) in ONE transaction; returns how
        many assignments changed."""
        with self._begin("store owners") as conn:
            return store_owners.record(conn, assignments, now)

    # --- findings ---------------------------------------------------------------------------

    def record_findings(
        self,
        scan_id: int,
        findings: Sequence[Finding],
        *,
        evaluated: Iterable[EndpointKey],
        now: datetime,
    ) -> FindingChanges:
        """Apply one evaluation of the findings rules, in ONE transaction.

        ``evaluated`` names the endpoints whose findings were just computed (those ``scan_id``
        observed); every finding must belong to one of them. Their open findings present in
        ``findings`` are seen again (``last_seen``, ``last_scan_id``, severity and message
        updated), the others are resolved at ``now``; findings without an open row are opened.
        Other endpoints' findings are untouched. Of two findings with one identity (endpoint,
        kind, sha256) the more severe is kept. Raises ValueError for an unknown scan, a naive
        ``now``, or a finding of an endpoint not evaluated or not stored.
        """
        with self._write("store findings") as conn:
            return store_findings.record(conn, scan_id, findings, evaluated=evaluated, now=now)

    def findings(
        self, *, open_only: bool = True, endpoint: EndpointKey | None = None
    ) -> list[FindingRecord]:
        """Stored findings (only open ones by default; of one endpoint when given), most severe
        first, then by address, port, SNI and kind."""
        with self._begin("read findings") as conn:
            return store_findings.read(conn, open_only=open_only, endpoint=endpoint)

    def findings_page(
        self,
        *,
        open_only: bool = True,
        min_severity: Severity | None = None,
        after: FindingCursor | None = None,
        limit: int = 1000,
    ) -> tuple[list[FindingRecord], FindingCursor | None]:
        """One page of stored findings (open ones by default; at or above ``min_severity``),
        most severe first, then in the order they were opened; and the cursor of the next page
        (None on the last). Each page is one short read: memory stays at a page."""
        with self._begin("read findings") as conn:
            return store_findings.read_page(
                conn, open_only=open_only, min_severity=min_severity, after=after, limit=limit
            )

    def findings_tally(
        self, *, open_only: bool = True, min_severity: Severity | None = None
    ) -> dict[str, int]:
        """Counts of findings: ``open``, the ``endpoints`` they are on, ``resolved``."""
        with self._begin("read findings") as conn:
            return store_findings.tally(conn, open_only=open_only, min_severity=min_severity)

    def stats(self) -> dict[str, int]:
        """Row counts: scans, endpoints, certificates, observations, findings (open or not)."""
        tables = {
            "scans": t.SCAN_RUN,
            "endpoints": t.ENDPOINT,
            "certificates": t.CERTIFICATE,
            "observations": t.OBSERVATION,
            "findings": t.FINDING,
        }
        with self._begin("read the inventory") as conn:
            return {
                name: int(conn.execute(sa.select(sa.func.count()).select_from(tb)).scalar_one())
                for name, tb in tables.items()
            }
