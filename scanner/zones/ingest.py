"""The ingest worker: agents' messages into the inventory, checked and idempotent.

Three tasks on the ingest queue take an agent's JSON message (a fourth, ``finalize``, is kept
for messages queued by older versions):

* ``shard_started``: :meth:`Inventory.shard_started` (the attempt takes the shard over);
* ``batch``: decode the outcomes (:mod:`scanner.zones.wire`; a malformed item is dropped, not
  the batch), check each against the shard's plan (:mod:`scanner.zones.vet`, rebuilt from the
  scan's stored shard task), parse each distinct certificate once, and
  :meth:`Inventory.ingest_batch` with the number dropped; a batch seen before changes nothing;
* ``shard_finished``: :meth:`Inventory.shard_finished`; a finish whose batches are still on their
  way is kept on the shard and applied by the last of them.

After a batch or a finish the scan is finalised if every shard is final
(:mod:`scanner.zones.settle`); a periodic check does the same for any scan, so a scan settles
even when the process that settled its last shard died.

Every message is checked before it changes anything: the scan must be a running *dispatched*
scan (local shards are never touched), the shard one of it, the attempt time plausible
(:mod:`scanner.inventory.zone`), and the message must arrive on the ingest queue the scan was
dispatched with, so an agent holding credentials for one zone's queue cannot write another's.
A malformed or refused message is logged on one line and dropped: it would be as wrong the next
time. A database error retries the message with a growing pause (the broker keeps it); after
:data:`STORE_RETRIES` (``CERTSCAN_INGEST_RETRIES``) it goes to the dead-letter queue
``<queue>.dead``, counted on the shard.
The inventory is opened once per worker process, lazily (after the fork).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from scanner.errors import StoreError
from scanner.inventory.shards import ShardRejected
from scanner.inventory.store import Inventory
from scanner.models import CertInfo, Handshake
from scanner.parse import CertCache
from scanner.plan.shards import ShardedPlan, ShardSpec
from scanner.sweep.pipeline import CACHE_ENTRIES
from scanner.zones import app as zapp
from scanner.zones import settle
from scanner.zones.messages import (
    VERSION,
    BatchMessage,
    ShardFinished,
    ShardStarted,
    ShardTask,
    kind_of,
)
from scanner.zones.vet import endpoints_of, vet
from scanner.zones.wire import WireError, integer, mapping, only_keys

log = logging.getLogger("certscan.ingest")

#: Retries of a message the database could not take, and the pauses between them (doubling
#: from the first to the cap, ``CERTSCAN_INGEST_BACKOFF_MAX`` overriding the cap): about six
#: hours at the defaults before the message is dead-lettered.
STORE_RETRIES = 80
STORE_FIRST_SECONDS = 2.0
STORE_MAX_SECONDS = 300.0
#: Moot attempts remembered per process; scans whose plans are kept per process.
MOOT_ATTEMPTS = 4096
PLANS = 8
SHARD_PLANS = 64


def store_retries() -> int:
    """Retries before a message is dead-lettered (``CERTSCAN_INGEST_RETRIES`` overrides)."""
    raw = os.environ.get("CERTSCAN_INGEST_RETRIES", "")
    try:
        return min(max(int(raw), 0), 10_000) if raw else STORE_RETRIES
    except ValueError:
        return STORE_RETRIES


def backoff(retries: int) -> float:
    """The pause before retry number ``retries + 1`` of a message the store refused."""
    raw = os.environ.get("CERTSCAN_INGEST_BACKOFF_MAX", "")
    try:
        cap = min(max(float(raw), 0.1), STORE_MAX_SECONDS) if raw else STORE_MAX_SECONDS
    except ValueError:
        cap = STORE_MAX_SECONDS
    return float(min(cap, STORE_FIRST_SECONDS * 2 ** min(retries, 20)))


class Ingest:
    """The database side of the ingest tasks (one per worker process)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._inventory: Inventory | None = None
        self._cache = CertCache(CACHE_ENTRIES)
        #: Attempts that started on a shard already settled: their batches are moot.
        self._moot: OrderedDict[tuple[int, int, str], None] = OrderedDict()
        self._tasks: OrderedDict[int, tuple[ShardTask, Any]] = OrderedDict()
        self._shards: OrderedDict[tuple[int, int], tuple[ShardedPlan, list[Any]]] = OrderedDict()

    @property
    def inventory(self) -> Inventory:
        if self._inventory is None:
            self._inventory = Inventory(self._url)
        return self._inventory

    def task(self, scan_id: int, queue: str | None) -> ShardTask:
        """The scan's shard task as dispatched (cached); ShardRejected for a scan not
        dispatched, or a message that came on another ingest queue."""
        cached = self._tasks.get(scan_id)
        if cached is None:
            stored = self.inventory.plan(scan_id)
            if stored is None or stored[1] is None:
                raise ShardRejected(f"scan {scan_id} has no dispatched plan in the inventory")
            task = ShardTask.from_wire(json.loads(stored[1]))
            cached = (task, task.plan.build())
            self._tasks[scan_id] = cached
            while len(self._tasks) > PLANS:
                self._tasks.popitem(last=False)
        task = cached[0]
        if queue is not None and queue != task.ingest_queue:
            raise ShardRejected(
                f"scan {scan_id}: a message on {queue!r}, but its results go to "
                f"{task.ingest_queue!r}"
            )
        return task

    def _shard(self, scan_id: int, shard: int, queue: str | None) -> tuple[ShardedPlan, list[Any]]:
        self.task(scan_id, queue)
        key = (scan_id, shard)
        found = self._shards.get(key)
        if found is None:
            task, plan = self._tasks[scan_id]
            if not 0 <= shard < task.shards:
                raise ShardRejected(f"scan {scan_id} has no shard {shard}")
            found = (ShardedPlan(plan, ShardSpec(task.seed, task.shards, shard)), [])
            self._shards[key] = found
            while len(self._shards) > SHARD_PLANS:
                self._shards.popitem(last=False)
        return found

    def started(self, message: ShardStarted, queue: str | None = None) -> None:
        key = message.key
        self.task(key.scan_id, queue)
        fresh = self.inventory.shard_started(
            key.scan_id,
            key.shard,
            attempt=key.attempt,
            started_at=key.attempt_started_at,
            agent=message.agent,
        )
        if not fresh:
            log.info("scan %d shard %d is settled; attempt %s ignored", *_ids(message))
            self._moot[_ids(message)] = None
            while len(self._moot) > MOOT_ATTEMPTS:
                self._moot.popitem(last=False)

    def batch(self, message: BatchMessage, queue: str | None = None) -> bool:
        """Store a batch; False when it changed nothing (stored before, or moot)."""
        if _ids(message) in self._moot:
            return False
        key = message.key
        plan, memo = self._shard(key.scan_id, key.shard, queue)

        def endpoints() -> Any:
            if not memo:
                memo.append(endpoints_of(plan))
            return memo[0]

        checked = vet(
            message.outcomes,
            message.indices,
            plan,
            endpoints,
            attempt_started_at=key.attempt_started_at,
            now=datetime.now(UTC),
        )
        rejected = message.dropped + checked.rejected
        if rejected:
            log.warning(
                "scan %d shard %d batch %d: %d outcomes rejected (%s)",
                key.scan_id,
                key.shard,
                message.seq,
                rejected,
                (message.problem or checked.problem or "?")[:200],
            )
        get = self._cache.get
        items: list[tuple[Any, tuple[CertInfo, ...]]] = []
        alts: list[tuple[tuple[CertInfo, ...], ...]] = []
        for outcome in checked.outcomes:
            chain: tuple[CertInfo, ...] = ()
            extra: tuple[tuple[CertInfo, ...], ...] = ()
            if isinstance(outcome, Handshake):
                chain = tuple(get(der) for der in outcome.chain)
                extra = tuple(tuple(get(der) for der in alt) for alt in outcome.alt_chains)
            items.append((outcome, chain))
            alts.append(extra)
        return self.inventory.ingest_batch(
            key.scan_id,
            key.shard,
            attempt=key.attempt,
            attempt_started_at=key.attempt_started_at,
            seq=message.seq,
            items=items,
            indices=list(checked.indices),
            alt_chains=alts if any(alts) else None,
            progress=message.progress,
            rejected=rejected,
        )

    def finished(self, message: ShardFinished, queue: str | None = None) -> str:
        key = message.key
        self.task(key.scan_id, queue)
        result = self.inventory.shard_finished(
            key.scan_id,
            key.shard,
            attempt=key.attempt,
            attempt_started_at=key.attempt_started_at,
            batches=message.batches,
            progress=message.progress,
            error=message.error,
        )
        return result.state

    def settle(self, scan_id: int) -> str | None:
        """Finalise the scan if every shard is final (idempotent)."""
        return settle.finalize(self.inventory, scan_id)

    def finalize(self, scan_id: int) -> str | None:
        return self.settle(scan_id)


def _ids(message: ShardStarted | BatchMessage) -> tuple[int, int, str]:
    return message.key.scan_id, message.key.shard, message.key.attempt


def _finalize_scan_id(value: object) -> int:
    data = mapping(value, "finalize")
    only_keys(data, frozenset({"v", "type", "scan_id"}), "finalize")
    if data.get("v") != VERSION or data.get("type") != "finalize":
        raise WireError("finalize: unsupported message")
    return integer(data, "scan_id", 1, 2**62)


def _scan_and_shard(message: object) -> tuple[int, int] | None:
    """The scan and shard a message names, if it names them plainly (for dead letters)."""
    if isinstance(message, dict):
        scan, shard = message.get("scan_id"), message.get("shard")
        if type(scan) is int and type(shard) is int and 0 < scan < 2**62 and 0 <= shard < 2**31:
            return scan, shard
    return None


def register(app: Any, db_url: str) -> None:
    """Add the ingest tasks to ``app``, storing into the inventory at ``db_url``."""
    ingest = Ingest(db_url)

    def queue_of(task: Any) -> str | None:
        info = task.request.delivery_info or {}
        name = info.get("routing_key")
        return name if isinstance(name, str) and name else None

    def dead_letter(task: Any, message: object, reason: str) -> None:
        queue = f"{queue_of(task) or zapp.INGEST_QUEUE}.dead"
        log.error("%s message: %s; gave up, moved to %s", kind_of(message), reason, queue)
        zapp.publish(app, task.name, message if isinstance(message, dict) else {}, queue)
        ids = _scan_and_shard(message)
        if ids is not None:
            try:
                ingest.inventory.dead_letter(*ids)
            except StoreError as exc:
                log.error("scan %d shard %d: cannot count the dead letter (%s)", *ids, exc)

    def guarded(task: Any, message: object, work: Callable[[str | None], None]) -> None:
        """Run ``work``; drop a malformed or refused message, retry one the store refused."""
        try:
            work(queue_of(task))
        except WireError as exc:
            log.error("rejected %s message: %s", kind_of(message), exc)
        except ShardRejected as exc:
            log.error("rejected %s message: %s", kind_of(message), exc)
        except StoreError as exc:
            retries = int(task.request.retries or 0)
            if retries >= store_retries():
                dead_letter(task, message, str(exc))
                return
            pause = backoff(retries)
            log.error("%s; retrying in %.0f s (retry %d)", exc, pause, retries + 1)
            raise task.retry(countdown=pause) from None

    def settle_after(scan_id: int) -> None:
        status = ingest.settle(scan_id)
        if status is not None:
            log.info("scan %d %s", scan_id, status)

    def shard_started(self: Any, message: object) -> None:
        guarded(self, message, lambda q: ingest.started(ShardStarted.from_wire(message), q))

    def batch(self: Any, message: object) -> None:
        def work(queue: str | None) -> None:
            parsed = BatchMessage.from_wire(message)
            if not ingest.batch(parsed, queue):
                log.info(
                    "scan %d shard %d attempt %s: batch %d stored before or moot",
                    *_ids(parsed),
                    parsed.seq,
                )
            settle_after(parsed.key.scan_id)

        guarded(self, message, work)

    def shard_finished(self: Any, message: object) -> None:
        def work(queue: str | None) -> None:
            parsed = ShardFinished.from_wire(message)
            state = ingest.finished(parsed, queue)
            key = parsed.key
            log.info(
                "scan %d shard %d: %s (attempt %s)", key.scan_id, key.shard, state, key.attempt
            )
            settle_after(key.scan_id)

        guarded(self, message, work)

    def finalize(self: Any, message: object) -> None:
        def work(_queue: str | None) -> None:
            scan_id = _finalize_scan_id(message)
            log.info("scan %d: %s", scan_id, ingest.finalize(scan_id) or "not settled or closed")

        guarded(self, message, work)

    # No Celery retry limit (its default is 3): guarded() bounds the retries itself and then
    # dead-letters the message, instead of Celery acknowledging it and dropping it.
    unbounded = {"max_retries": None}
    app.task(**zapp.task_options(zapp.STARTED_TASK), **unbounded)(shard_started)
    app.task(**zapp.task_options(zapp.BATCH_TASK), **unbounded)(batch)
    app.task(**zapp.task_options(zapp.FINISHED_TASK), **unbounded)(shard_finished)
    app.task(**zapp.task_options(zapp.FINALIZE_TASK), **unbounded)(finalize)


def run_ingest(db_url: str, broker: str, *, queue: str, concurrency: int) -> None:
    """Run the ingest worker until stopped, with the periodic settling check."""
    app = zapp.make_app(broker)
    zapp.check_broker(app)
    Inventory(db_url).close()  # fail now (exit 3) when the database cannot be opened
    register(app, db_url)
    checker = settle.Settler(db_url)
    checker.start()
    try:
        zapp.run_worker(
            app,
            queue=queue,
            concurrency=concurrency,
            hostname=f"certscan-ingest@{socket.gethostname()}",
        )
    finally:
        checker.stop()
