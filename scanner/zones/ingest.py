"""The ingest worker: agents' messages into the inventory, idempotently.

Four tasks on the ingest queue, each taking one JSON message:

* ``shard_started``: :meth:`Inventory.shard_started` (the attempt takes the shard over);
* ``batch``: decode and check the outcomes (:mod:`scanner.zones.wire`), parse each distinct
  certificate once (:class:`scanner.parse.CertCache`), :meth:`Inventory.ingest_batch`; a batch
  seen before changes nothing, and the batches of an attempt that started on a shard already
  settled (a duplicated shard task) are skipped by the process that saw it start;
* ``shard_finished``: :meth:`Inventory.shard_finished`. ``incomplete`` (some batches of the
  attempt are not stored yet, e.g. still queued behind it in another ingest process) retries the
  message after a pause, a bounded number of times; ``stale`` is ignored. The one call told
  ``scan_settled`` finalises the scan;
* ``finalize``: record the scan's findings (``reports.assess.record_scan``, as a sweep does)
  and close it ``finished``, or ``failed`` when a shard failed. Idempotent: a scan no longer
  ``running`` is left alone. Run inline when the scan settles; queued only when that failed.

A malformed message (wrong version, type, field, bound) is logged on one line and dropped: it
would be as malformed the next time. A database error retries the message after a pause.
The inventory is opened once per worker process, lazily (after the fork).
"""

from __future__ import annotations

import logging
import os
import socket
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from reports import assess
from scanner.errors import StoreError
from scanner.inventory.store import Inventory
from scanner.models import CertInfo, Handshake
from scanner.parse import CertCache
from scanner.sweep.pipeline import CACHE_ENTRIES
from scanner.zones import app as zapp
from scanner.zones.messages import VERSION, BatchMessage, ShardFinished, ShardStarted, kind_of
from scanner.zones.wire import WireError, integer, mapping, only_keys

log = logging.getLogger("certscan.ingest")

#: How often, and how far apart, a ``shard_finished`` waiting for its batches is retried.
INCOMPLETE_RETRIES = 60
INCOMPLETE_SECONDS = 2
#: Retries of a message the database could not take, and the pause between them.
STORE_RETRIES = 20
STORE_SECONDS = 5
#: Moot attempts remembered per process.
MOOT_ATTEMPTS = 4096


class Ingest:
    """The database side of the ingest tasks (one per worker process)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._inventory: Inventory | None = None
        self._cache = CertCache(CACHE_ENTRIES)
        #: Attempts that started on a shard already settled: their batches are moot (another
        #: attempt stored the shard), so this process skips them without a transaction.
        self._moot: OrderedDict[tuple[int, int, str], None] = OrderedDict()

    @property
    def inventory(self) -> Inventory:
        if self._inventory is None:
            self._inventory = Inventory(self._url)
        return self._inventory

    def started(self, message: ShardStarted) -> None:
        key = message.key
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

    def batch(self, message: BatchMessage) -> bool:
        """Store a batch; False when it changed nothing (stored before, or moot)."""
        if _ids(message) in self._moot:
            return False
        get = self._cache.get
        items: list[tuple[Any, tuple[CertInfo, ...]]] = []
        alts: list[tuple[tuple[CertInfo, ...], ...]] = []
        for outcome in message.outcomes:
            chain: tuple[CertInfo, ...] = ()
            extra: tuple[tuple[CertInfo, ...], ...] = ()
            if isinstance(outcome, Handshake):
                chain = tuple(get(der) for der in outcome.chain)
                extra = tuple(tuple(get(der) for der in alt) for alt in outcome.alt_chains)
            items.append((outcome, chain))
            alts.append(extra)
        key = message.key
        return self.inventory.ingest_batch(
            key.scan_id,
            key.shard,
            attempt=key.attempt,
            attempt_started_at=key.attempt_started_at,
            seq=message.seq,
            items=items,
            indices=list(message.indices),
            alt_chains=alts if any(alts) else None,
            progress=message.progress,
        )

    def finished(self, message: ShardFinished) -> tuple[str, bool]:
        key = message.key
        result = self.inventory.shard_finished(
            key.scan_id,
            key.shard,
            attempt=key.attempt,
            attempt_started_at=key.attempt_started_at,
            batches=message.batches,
            progress=message.progress,
            error=message.error,
        )
        return result.state, result.scan_settled

    def finalize(self, scan_id: int) -> str | None:
        """Record the findings and close the scan; None when it was closed already."""
        inventory = self.inventory
        run = inventory.scan(scan_id)
        if run is None or run.status != "running":
            return None
        failed = any(s.status == "failed" for s in inventory.shards(scan_id))
        criteria = assess.load_criteria(None, env=os.environ)
        assess.record_scan(inventory, scan_id, criteria=criteria, now=datetime.now(UTC))
        status = "failed" if failed else "finished"
        inventory.finish_scan(scan_id, status)
        return status


def _ids(message: ShardStarted | BatchMessage) -> tuple[int, int, str]:
    return message.key.scan_id, message.key.shard, message.key.attempt


def _finalize_message(scan_id: int) -> dict[str, Any]:
    return {"v": VERSION, "type": "finalize", "scan_id": scan_id}


def _finalize_scan_id(value: object) -> int:
    data = mapping(value, "finalize")
    only_keys(data, frozenset({"v", "type", "scan_id"}), "finalize")
    if data.get("v") != VERSION or data.get("type") != "finalize":
        raise WireError("finalize: unsupported message")
    return integer(data, "scan_id", 1, 2**62)


def register(app: Any, db_url: str) -> None:
    """Add the ingest tasks to ``app``, storing into the inventory at ``db_url``."""
    ingest = Ingest(db_url)

    def guarded(task: Any, message: object, work: Callable[[], None]) -> None:
        """Run ``work``; drop a malformed message, retry one the database refused."""
        try:
            work()
        except WireError as exc:
            log.error("rejected %s message: %s", kind_of(message), exc)
        except StoreError as exc:
            log.error("%s; retrying in %d s", exc, STORE_SECONDS)
            raise task.retry(countdown=STORE_SECONDS, max_retries=STORE_RETRIES) from None

    def shard_started(self: Any, message: object) -> None:
        guarded(self, message, lambda: ingest.started(ShardStarted.from_wire(message)))

    def batch(self: Any, message: object) -> None:
        def work() -> None:
            parsed = BatchMessage.from_wire(message)
            if not ingest.batch(parsed):
                log.info(
                    "scan %d shard %d attempt %s: batch %d stored before or moot",
                    *_ids(parsed),
                    parsed.seq,
                )

        guarded(self, message, work)

    def shard_finished(self: Any, message: object) -> None:
        def work() -> None:
            parsed = ShardFinished.from_wire(message)
            state, settled = ingest.finished(parsed)
            key = parsed.key
            if state == "incomplete":
                if self.request.retries >= INCOMPLETE_RETRIES:
                    log.error(
                        "scan %d shard %d: attempt %s announced %d batches, not all arrived; "
                        "giving up",
                        key.scan_id,
                        key.shard,
                        key.attempt,
                        parsed.batches,
                    )
                    return
                raise self.retry(countdown=INCOMPLETE_SECONDS, max_retries=INCOMPLETE_RETRIES)
            log.info(
                "scan %d shard %d: %s (attempt %s)", key.scan_id, key.shard, state, key.attempt
            )
            if settled:
                try:
                    status = ingest.finalize(key.scan_id)
                    log.info("scan %d %s", key.scan_id, status)
                except StoreError as exc:
                    log.error("scan %d: cannot finalise now (%s); queued", key.scan_id, exc)
                    app.send_task(
                        zapp.FINALIZE_TASK,
                        args=[_finalize_message(key.scan_id)],
                        queue=self.request.delivery_info.get("routing_key") or zapp.INGEST_QUEUE,
                        countdown=STORE_SECONDS,
                    )

        guarded(self, message, work)

    def finalize(self: Any, message: object) -> None:
        def work() -> None:
            scan_id = _finalize_scan_id(message)
            log.info("scan %d: %s", scan_id, ingest.finalize(scan_id) or "closed already")

        guarded(self, message, work)

    app.task(**zapp.task_options(zapp.STARTED_TASK))(shard_started)
    app.task(**zapp.task_options(zapp.BATCH_TASK))(batch)
    app.task(**zapp.task_options(zapp.FINISHED_TASK))(shard_finished)
    app.task(**zapp.task_options(zapp.FINALIZE_TASK))(finalize)


def run_ingest(db_url: str, broker: str, *, queue: str, concurrency: int) -> None:
    """Run the ingest worker until stopped."""
    app = zapp.make_app(broker)
    zapp.check_broker(app)
    Inventory(db_url).close()  # fail now (exit 3) when the database cannot be opened
    register(app, db_url)
    zapp.run_worker(
        app,
        queue=queue,
        concurrency=concurrency,
        hostname=f"certscan-ingest@{socket.gethostname()}",
    )
