"""One sweep from a target plan to the inventory.

Theory of operation
-------------------
Three kinds of task share one nursery:

* the **engine** (``scanner.engine.crew.sweep``) pulls targets lazily from the plan and sends
  ``(index, outcome)`` pairs on a channel;
* the **collector** (this module) parses each presented chain once per fingerprint, emits the
  ``--json`` line, updates the live counters and appends the outcome to the current batch;
* the **writer** takes whole batches and stores each in one database transaction in a worker
  thread, so the event loop never blocks on the database.

Resume: targets are numbered by their position in the plan. The collector keeps the lowest index
not yet completed (the *watermark*); a batch is cut only with everything completed so far, so the
watermark written with it is covered by what is already stored — the resume point and the results
it covers land in the same transaction. Targets above the watermark that were already stored are
skipped on resume by identity.

SNI discovery (``--sni-from``, ``--sni-file``; ``scanner.engine.discovery``): the engine probes a
target's follow-ups ``(address, port, other name)`` right after its handshake (or its refused
handshake, once TCP was accepted: strict-SNI servers) and sends their
outcomes (index ``engine.FOLLOW_UP``) before the target's own. They join the batch as they come
but complete no index, so a target's follow-ups are stored in the same transaction as the target
or an earlier one. On resume, a stored target is skipped with its discovery (its follow-ups are
stored); a target not stored is probed again and its discovery re-run, minus the follow-ups
already stored (the store reports them, having no index, as done). Follow-ups add to the live
total but not to the scan's stored target counts.

Where batches go: a *sink* (an async callable) takes each batch, in order, in a shielded scope.
:func:`inventory_sink` stores it (one transaction; with ``shard``, counted in that shard of a
sharded scan); a zone agent's sink publishes it to the ingest queue instead
(``scanner.zones.agent``). Each batch carries a :class:`Progress` snapshot taken when it was
cut, so a consumer far away knows how far the sweep had got.

SYN discovery (``--discover syn``, ``scanner.sweep.discover``): the engine's place is taken by
a SYN scan feeding the same engine its responders; the targets that did not answer come back
as ``refused``/``timeout`` outcomes like any other, so counts and the watermark are unchanged.

Stopping: cancelling the sweep (Ctrl-C) stops the engine; the collector's partial batch is then
flushed under a shielded scope, so nothing that completed is lost.
"""

from __future__ import annotations

import heapq
import signal
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import trio

from scanner.engine import crew as engine
from scanner.engine.discovery import DiscoveryOptions, SniDiscovery
from scanner.engine.syn.scan import SynSettings, SynStats
from scanner.inventory.store import Inventory
from scanner.models import CertInfo, EngineLimits, Handshake, Outcome, Progress, ScanFailure, Target
from scanner.parse import CertCache
from scanner.plan.shards import Plan
from scanner.sweep.counters import SweepCounters
from scanner.sweep.discover import sweep_after_syn

BATCH_SIZE = 400
BATCH_SECONDS = 0.5
CACHE_ENTRIES = 10_000  # parsed certificates kept in memory, at most CACHE_BYTES of them
#: The sweep's parse cache budget (``CertCache`` cost): the intermediates and the leaves served
#: on several ports stay; with 64 MiB, a 10,000-endpoint sweep kept every leaf it parsed once.
CACHE_BYTES = 16 * 1024 * 1024


def sweep_cache() -> CertCache:
    """The parse cache of one sweep process."""
    return CertCache(CACHE_ENTRIES, max_bytes=CACHE_BYTES)


Item = tuple[Outcome, tuple[CertInfo, ...]]
#: The parsed ``Handshake.alt_chains`` of an item (``--all-certs``); empty for most.
Alts = tuple[tuple[CertInfo, ...], ...]
OnResult = Callable[[Outcome, tuple[CertInfo, ...]], None]


@dataclass(frozen=True, slots=True)
class Batch:
    """Outcomes to store in one transaction, their plan indices, and the resume point they cover."""

    items: list[Item]
    indices: list[int]
    watermark: int
    alts: list[Alts] | None = None  # parallel to items when any has alternative chains
    progress: Progress | None = None  # when the batch was cut


#: Where the pipeline hands each batch (in order; awaited in a shielded scope).
Sink = Callable[[Batch], Awaitable[None]]


@dataclass(slots=True)
class _Watermark:
    """The lowest target index not yet completed, advanced as indices complete in any order."""

    value: int
    _pending: list[int]

    @classmethod
    def starting_at(cls, start: int) -> _Watermark:
        return cls(start, [])

    def complete(self, index: int) -> None:
        heapq.heappush(self._pending, index)
        while self._pending and self._pending[0] == self.value:
            heapq.heappop(self._pending)
            self.value += 1


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepJob:
    """Everything one sweep needs besides the inventory."""

    plan: Plan
    limits: EngineLimits
    scan_id: int
    start_index: int = 0
    already_done: frozenset[tuple[str, int, str | None]] = frozenset()
    #: SNI discovery; None (or nothing enabled): none.
    discovery: DiscoveryOptions | None = None
    #: ``--discover syn``: the SYN scan run before the handshakes, and its live counts;
    #: None: connect discovery (``scanner.sweep.discover``).
    syn: SynSettings | None = None
    syn_stats: SynStats | None = None


def _key(target: Target) -> tuple[str, int, str | None]:
    return (target.address, target.port, target.sni)


class _Collector:
    def __init__(
        self,
        job: SweepJob,
        counters: SweepCounters,
        on_result: OnResult | None,
        cache: CertCache,
    ) -> None:
        self._job = job
        self._counters = counters
        self._on_result = on_result
        self._cache = cache
        self._watermark = _Watermark.starting_at(job.start_index)
        self._batch: list[Item] = []
        self._indices: list[int] = []
        self._alts: list[Alts] | None = None
        self._flush_lock = trio.Lock()
        self.batches_written = 0
        self._done = 0  # planned targets completed (skipped ones included), and how many handshook
        self._ok = 0

    def targets(self) -> Iterator[tuple[int, Target]]:
        """The plan from the resume point, minus targets this scan already stored."""
        done = self._job.already_done
        for index, target in self._job.plan.iter_from(self._job.start_index):
            if done and _key(target) in done:
                self._watermark.complete(index)
                self._counters.done += 1
                self._done += 1
                continue
            yield index, target

    def discover(self) -> SniDiscovery | None:
        """The engine's ``discover`` hook for this job, or None."""
        options = self._job.discovery
        if options is None or not options.enabled:
            return None
        return SniDiscovery(
            options, lambda der: self._cache.get(der).san_dns, skip=self._job.already_done
        )

    def accept(self, index: int, outcome: Outcome) -> None:
        chain: tuple[CertInfo, ...] = ()
        alts: Alts = ()
        connected = True
        match outcome:
            case Handshake():
                chain = tuple(self._cache.get(der) for der in outcome.chain)
                if outcome.alt_chains:
                    get = self._cache.get
                    alts = tuple(tuple(get(der) for der in alt) for alt in outcome.alt_chains)
            case ScanFailure():
                connected = outcome.connected
        follow_up = index == engine.FOLLOW_UP
        if follow_up:
            self._counters.total += 1  # a discovered endpoint: one more than planned
        every = [c.sha256 for c in chain] + [c.sha256 for alt in alts for c in alt]
        self._counters.count(outcome.status, connected=connected, chain=every)
        if self._on_result is not None:
            self._on_result(outcome, chain)
        if alts and self._alts is None:
            self._alts = [() for _ in self._batch]
        if self._alts is not None:
            self._alts.append(alts)
        self._batch.append((outcome, chain))
        self._indices.append(index)
        if not follow_up:
            self._watermark.complete(index)
            self._done += 1
            self._ok += isinstance(outcome, Handshake)

    def cut(self) -> Batch | None:
        if not self._batch:
            return None
        mark = self._watermark.value
        progress = Progress(mark, self._done, self._ok, self._done - self._ok)
        batch = Batch(self._batch, self._indices, mark, self._alts, progress)
        self._batch, self._indices, self._alts = [], [], None
        return batch

    async def flush(self, batches: trio.MemorySendChannel[Batch]) -> None:
        """Cut and send a batch. Serialised, so batches reach the writer in the order they were
        cut and a stored watermark never runs ahead of the results stored before it."""
        async with self._flush_lock:
            cut = self.cut()
            if cut is not None:
                # Once cut, a batch must reach the writer: a cancelled send would lose it while
                # a later batch carries a watermark past it. The writer is shielded and drains.
                with trio.CancelScope(shield=True):
                    await batches.send(cut)

    @property
    def pending(self) -> int:
        return len(self._batch)


def inventory_sink(inventory: Inventory, scan_id: int, *, shard: int | None = None) -> Sink:
    """A sink storing each batch in ``inventory`` (in a worker thread), in ``shard`` if given."""

    async def write(batch: Batch) -> None:
        await trio.to_thread.run_sync(
            lambda: inventory.record_batch(
                scan_id,
                batch.items,
                watermark=batch.watermark,
                indices=batch.indices,
                alt_chains=batch.alts,
                shard=shard,
            )
        )

    return write


async def run_sweep(
    job: SweepJob,
    sink: Sink,
    counters: SweepCounters,
    *,
    on_result: OnResult | None = None,
    on_tick: Callable[[], None] | None = None,
    cache: CertCache | None = None,
) -> None:
    """Sweep ``job.plan`` into ``sink``. Returns when done; on cancellation, flushes first."""
    collector = _Collector(job, counters, on_result, cache or sweep_cache())
    send, receive = trio.open_memory_channel[tuple[int, Outcome]](job.limits.concurrency)
    batches_send, batches_receive = trio.open_memory_channel[Batch](2)

    async def writer() -> None:
        # Shielded: once a batch is cut it is written, even while the sweep is being cancelled.
        # The loop ends when the collector closes its end of the channel.
        with trio.CancelScope(shield=True):
            async with batches_receive:
                async for cut in batches_receive:
                    await sink(cut)

    async def collect() -> None:
        async with batches_send:
            try:
                async with receive, trio.open_nursery() as inner:
                    inner.start_soon(_tick, collector, batches_send, on_tick)
                    async for index, outcome in receive:
                        collector.accept(index, outcome)
                        _drain(receive, collector)  # what is already there, in this round
                        if collector.pending >= BATCH_SIZE:
                            await collector.flush(batches_send)
                    inner.cancel_scope.cancel()
            finally:
                with trio.CancelScope(shield=True):
                    await collector.flush(batches_send)
                if on_tick is not None:
                    on_tick()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        nursery.start_soon(collect)
        discover = collector.discover()
        if job.syn is not None:
            settings, stats = job.syn, job.syn_stats or SynStats()
            nursery.start_soon(
                lambda: sweep_after_syn(
                    collector.targets(),
                    job.limits,
                    send,
                    settings=settings,
                    stats=stats,
                    discover=discover,
                    on_phase=lambda phase: setattr(counters, "phase", phase),
                )
            )
        else:
            nursery.start_soon(
                lambda: engine.sweep(collector.targets(), job.limits, send, discover=discover)
            )


def _drain(receive: trio.MemoryReceiveChannel[tuple[int, Outcome]], collector: _Collector) -> None:
    """Accept the outcomes already waiting, up to a batch, without a scheduler round each (SYN
    discovery settles dead targets by the hundred thousand)."""
    while collector.pending < BATCH_SIZE:
        try:
            index, outcome = receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return
        collector.accept(index, outcome)


async def _tick(
    collector: _Collector,
    batches: trio.MemorySendChannel[Batch],
    on_tick: Callable[[], None] | None,
) -> None:
    """Every BATCH_SECONDS: store what has completed (so a slow sweep is saved as it goes)."""
    while True:
        await trio.sleep(BATCH_SECONDS)
        await collector.flush(batches)
        if on_tick is not None:
            on_tick()


async def until_signalled(work: Callable[[], Awaitable[None]]) -> bool:
    """Run ``work`` until it returns or SIGINT/SIGTERM arrives (which cancels it: the pipeline
    flushes what completed). Returns True when a signal stopped it."""
    interrupted = False
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal interrupted
                async for _ in signals:
                    interrupted = True
                    nursery.cancel_scope.cancel()
                    return

            async def run() -> None:
                await work()
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            nursery.start_soon(run)
    return interrupted


def scan_spec(**options: Any) -> dict[str, Any]:
    """The normalised description of a sweep, stored with the scan and matched by ``--resume``."""
    return {k: options[k] for k in sorted(options)}
