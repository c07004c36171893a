"""The sweep engine: many targets at once, under explicit limits.

Theory of operation
-------------------
:func:`sweep` runs one nursery holding one *feeder* task and ``limits.concurrency`` *workers*.
The feeder walks the (lazy) targets iterable and hands each ``(index, target)`` to an
unbuffered channel; a target is only pulled from the iterable when a worker is free to take
it, so a /8 never sits in memory. With ``limits.rate`` set, the feeder waits for each target's
slot on a fixed schedule (``start + n / rate``, via ``trio.sleep_until``): a late wake-up does
not push later slots back, and after a stall at most :data:`_CATCH_UP` seconds' worth of slots
are made up at once.

A worker takes a target, waits for that address's semaphore (created on first use, dropped
when no worker holds or waits for it, so memory follows the addresses in flight, not the
addresses seen), runs :func:`probe`, and sends ``(index, outcome)`` to ``results``.

:func:`probe` is one target end to end: connect (``limits.connect_timeout``), handshake
(``limits.handshake_timeout``), all inside ``limits.target_deadline`` so a peer dripping bytes
cannot hold a connection longer. Every timeout is a cancel scope; the socket is closed in
``finally``, so cancelling the sweep (Ctrl-C, an outer scope) leaves nothing open.

Network and TLS faults are values. Any other exception from :func:`probe` is a bug: the one
guard in :func:`_probe_guarded` re-raises it when ``internal_errors="raise"`` (tests) and
records it as ``internal_error`` (with a logged traceback) when ``"record"`` (production).
"""

from __future__ import annotations

import logging
import resource
import socket
import traceback
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final, Literal

import trio

from scanner import net, tls
from scanner.models import EngineLimits, FailureKind, Handshake, Outcome, ScanFailure, Target

log = logging.getLogger("certscan.engine")

InternalErrors = Literal["raise", "record"]

#: After a stall, the feeder makes up at most this many seconds of missed rate slots at once.
_CATCH_UP: Final = 0.05


# --- limits ---------------------------------------------------------------------------------


def raise_open_files_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft  # e.g. an infinite hard limit above the kernel's nr_open
        soft = target
    return soft


def effective_concurrency(requested: int, nofile: int) -> int:
    """``requested`` clamped so sockets leave room for everything else a sweep opens.

    One connection is one descriptor. The reserve (an eighth of the limit, between 32 and 256)
    covers the database and its WAL files, stdio, the event loop's own descriptors, resolvers
    and threads. Never less than 1.
    """
    reserve = min(256, max(32, nofile // 8))
    return max(1, min(requested, nofile - reserve))


# --- one target -----------------------------------------------------------------------------


async def probe(target: Target, limits: EngineLimits) -> Outcome:
    """Connect and handshake with one target; network and TLS faults come back as values.

    One cancel scope covers both phases: it ends at the connect timeout (or the per-target
    deadline, if sooner), and once connected its deadline moves to the handshake timeout (or
    the per-target deadline). Same limits as a scope per phase inside a deadline scope, at a
    third of the cost, which a sweep of a /16 notices.
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    context = tls.client_context(limits.tls_min_version)
    started_at = datetime.now(UTC)
    start = trio.current_time()
    deadline = start + limits.target_deadline
    sock: socket.socket | None = None
    connected: float | None = None
    result: tls.Negotiated | tls.Fault | None = None
    try:
        with trio.move_on_at(min(start + limits.connect_timeout, deadline)) as scope:
            sock = await net.connect(target.address, target.port)
            connected = trio.current_time()
            scope.deadline = min(connected + limits.handshake_timeout, deadline)
            result = await tls.handshake(
                sock, context, tls.sni_bytes(target.sni), limits.max_chain_bytes
            )
    except OSError as exc:
        result = tls.os_fault(exc)
        if result is None:
            raise
    finally:
        if sock is not None:
            sock.close()
    if result is None:
        if connected is None:
            result = _timed_out("connect", limits.connect_timeout, 0.0, limits)
        else:
            result = _timed_out("handshake", limits.handshake_timeout, connected - start, limits)
    return _outcome(target, started_at, start, connected, result)


def _timed_out(phase: str, allowed: float, offset: float, limits: EngineLimits) -> tls.Fault:
    """Which bound cut ``phase`` (begun ``offset`` s into the target) short."""
    if offset + allowed <= limits.target_deadline:
        return tls.fault(
            tls.TIMED_OUT, f"{phase} unfinished after the {allowed:g}s {phase} timeout"
        )
    detail = f"{phase} unfinished at the {limits.target_deadline:g}s per-target deadline"
    return tls.fault(tls.TIMED_OUT, detail)


def _outcome(
    target: Target,
    started_at: datetime,
    start: float,
    connected: float | None,
    result: tls.Negotiated | tls.Fault,
) -> Outcome:
    """The outcome record; ``connected`` is when TCP connected, ``None`` when it never did."""
    now = trio.current_time()
    mark = start if connected is None else connected
    match result:
        case tls.Negotiated():
            return Handshake(
                target=target,
                started_at=started_at,
                chain=result.chain,
                tls_version=result.tls_version,
                cipher=result.cipher,
                alpn=result.alpn,
                ocsp_staple=result.ocsp_staple,
                client_cert_requested=result.client_cert_requested,
                connect_seconds=mark - start,
                handshake_seconds=now - mark,
            )
        case tls.Fault():
            return ScanFailure(
                target=target,
                started_at=started_at,
                kind=result.kind,
                detail=result.detail,
                elapsed_seconds=now - start,
                connected=connected is not None,
            )


async def _probe_guarded(target: Target, limits: EngineLimits, policy: InternalErrors) -> Outcome:
    """The one place a bug inside :func:`probe` is either re-raised or recorded."""
    try:
        return await probe(target, limits)
    except Exception as exc:
        if policy == "raise":
            raise
        log.error("internal error while probing %s", target.label(), exc_info=exc)
        where = traceback.extract_tb(exc.__traceback__)[-1:]
        place = f" at {where[0].filename}:{where[0].lineno}" if where else ""
        return ScanFailure(
            target=target,
            started_at=datetime.now(UTC),  # when the bug surfaced; the probe's start is lost
            kind=FailureKind.INTERNAL_ERROR,
            detail=f"{type(exc).__name__}: {exc}{place}",
        )


# --- many targets ---------------------------------------------------------------------------


class _Gate:
    __slots__ = ("semaphore", "users")

    def __init__(self, size: int) -> None:
        self.semaphore = trio.Semaphore(size)
        self.users = 0


async def _feed(
    targets: Iterable[tuple[int, Target]],
    rate: float | None,
    jobs: trio.MemorySendChannel[tuple[int, Target]],
) -> None:
    async with jobs:
        if not rate:
            for item in targets:
                try:  # straight to an idle worker, without a round trip through the scheduler
                    jobs.send_nowait(item)
                except trio.WouldBlock:
                    await jobs.send(item)
            return
        interval = 1.0 / rate
        due = trio.current_time()
        for item in targets:
            await trio.sleep_until(due)
            await jobs.send(item)
            # The next slot, unless we are so late that more than _CATCH_UP s of slots
            # would follow back to back: then the schedule restarts that far behind now.
            due = max(due + interval, trio.current_time() + interval - _CATCH_UP)


async def _work(
    jobs: trio.MemoryReceiveChannel[tuple[int, Target]],
    limits: EngineLimits,
    gates: dict[str, _Gate],
    results: trio.MemorySendChannel[tuple[int, Outcome]],
    policy: InternalErrors,
) -> None:
    per_address = max(1, limits.per_address)
    async with jobs:
        async for index, target in jobs:
            gate = gates.get(target.address)
            if gate is None:
                gate = gates[target.address] = _Gate(per_address)
            gate.users += 1
            try:
                # Checkpoint-free when uncontended: the channel receive above has already
                # yielded once this round, and a scheduler round trip per target adds up.
                try:
                    gate.semaphore.acquire_nowait()
                except trio.WouldBlock:
                    await gate.semaphore.acquire()
                try:
                    outcome = await _probe_guarded(target, limits, policy)
                finally:
                    gate.semaphore.release()
            finally:
                gate.users -= 1
                if not gate.users:
                    del gates[target.address]
            try:
                results.send_nowait((index, outcome))
            except trio.WouldBlock:
                await results.send((index, outcome))


async def sweep(
    targets: Iterable[tuple[int, Target]],
    limits: EngineLimits,
    results: trio.MemorySendChannel[tuple[int, Outcome]],
    *,
    internal_errors: InternalErrors = "record",
) -> None:
    """Probe every target under ``limits``, sending ``(index, outcome)`` to ``results``.

    ``results`` is closed when the sweep ends, however it ends. ``internal_errors`` decides
    what a bug inside a probe does: ``"record"`` turns it into an ``internal_error`` outcome,
    ``"raise"`` lets it out (tests).
    """
    gates: dict[str, _Gate] = {}
    async with results:
        tls.client_context(limits.tls_min_version)  # a bad minimum version fails before any I/O
        jobs_in, jobs_out = trio.open_memory_channel[tuple[int, Target]](0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_feed, targets, limits.rate, jobs_in)
            async with jobs_out:
                for _ in range(max(1, limits.concurrency)):
                    nursery.start_soon(
                        _work, jobs_out.clone(), limits, gates, results, internal_errors
                    )
