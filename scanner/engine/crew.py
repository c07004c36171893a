"""The sweep engine: many targets at once, under explicit limits.

Theory of operation
-------------------
:func:`sweep` runs a *crew* of worker tasks that share one lazy iterator of targets: a worker
takes the next ``(index, target)`` only when it is free, so a /8 never sits in memory and no
feeder task stands between the plan and the workers. The crew starts small
(:data:`_FIRST_WORKERS`) and grows, up to ``limits.concurrency``, while connects wait on the
network: on loopback or a LAN that refuses at once it stays small and cheap to schedule,
against dead or distant hosts it reaches the full concurrency. With ``limits.rate`` set, each
worker waits for its slot on one shared fixed schedule (:class:`_Pacer`): a late wake-up does
not push later slots back, and after a stall at most :data:`_CATCH_UP` seconds' worth of slots
are made up at once.

A worker waits for the target address's semaphore (created on first use, dropped when no
worker holds or waits for it, so memory follows the addresses in flight, not the addresses
seen), runs :func:`probe`, and sends ``(index, outcome)`` to ``results``. TLS handshakes in
flight are bounded separately (``limits.handshakes``): a connected socket waits for a slot
before any OpenSSL state is allocated, which bounds memory however many connects are pending.

:func:`probe` is one target end to end: connect (``limits.connect_timeout``), the STARTTLS
preamble when the target has one, handshake (``limits.handshake_timeout`` each), all inside
``limits.target_deadline`` so a peer dripping bytes cannot hold a connection longer. Every
timeout is a cancel scope; the socket is closed in ``finally``, so cancelling the sweep
(Ctrl-C, an outer scope) leaves nothing open.

How TLS starts is ``target.protocol``: ``"tls"`` (implicit) or a STARTTLS protocol whose
preamble (``scanner.engine.starttls.session``) runs on the connected socket before the handshake.
When it is
``None`` (``--starttls auto``), a well-known STARTTLS port (25, 587, 110, 143, 21, 389, 3306,
3389, 5222, 5269, 5432) speaks its protocol and every other port implicit TLS, a dict lookup
and nothing more on the HTTPS path. An implicit-TLS attempt on such a port that fails
``not_tls`` because the server greeted in plaintext (``220 ``, ``* OK``, ``+OK``, a MySQL
handshake) is tried once more, on a new connection, with the protocol the greeting announced,
under the first attempt's deadline: at most one extra connection per target, and only for
servers that answered a ClientHello with a greeting.

Opt-in extras cost connections only when asked for. With ``limits.probe_protocols`` or
``limits.all_certs`` a target that handshook is tried again (``scanner.engine.rehandshake``: legacy
versions; only the other server key type, so a server holding an RSA and an ECDSA certificate
shows both). With a ``discover`` hook (SNI discovery, ``scanner.engine.discovery``) the worker
that reached a target (a handshake, or a failure after TCP was accepted: a strict-SNI server
refuses a ClientHello without its names) probes the follow-up targets the hook names (other SNIs
on the same address and port) before reporting the target itself; see :func:`sweep` for the
order this guarantees.

Network and TLS faults are values. Any other exception from :func:`probe` is a bug: the one
guard in :func:`_probe_guarded` re-raises it when ``internal_errors="raise"`` (tests) and
records it as ``internal_error`` (with a logged traceback) when ``"record"`` (production).
"""

from __future__ import annotations

import dataclasses
import logging
import resource
import socket
import traceback
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Final, Literal

import trio
from OpenSSL import SSL

from scanner.engine import net, rehandshake, tls
from scanner.engine.legacy import capture as legacy
from scanner.engine.starttls import protocols as starttls
from scanner.models import (
    STARTTLS_PORTS,
    EngineLimits,
    FailureKind,
    Handshake,
    Outcome,
    ScanFailure,
    Target,
)

log = logging.getLogger("certscan.engine")

InternalErrors = Literal["raise", "record"]
#: SNI discovery: more targets to probe after a target that accepted TCP (see :func:`sweep`).
Discover = Callable[[Outcome], Awaitable[Sequence[Target]]]
#: The index a follow-up outcome of ``discover`` is sent with: it is no target of the plan.
FOLLOW_UP: Final = -1

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

_STARTTLS_PORTS: Final = STARTTLS_PORTS  # the same dict: looked up per target
_NOT_TLS: Final = FailureKind.NOT_TLS


async def probe(
    target: Target,
    limits: EngineLimits,
    *,
    slots: trio.Semaphore | None = None,
    on_wait: Callable[[int], None] | None = None,
) -> Outcome:
    """Connect and handshake with one target; network and TLS faults come back as values.

    ``slots`` bounds the TLS handshakes in flight across a sweep (``limits.handshakes``): a
    connected socket waits for a slot before OpenSSL state is allocated; the wait counts
    against the per-target deadline only (not the connect or handshake timeout), and a wait
    that exhausts it is a ``timeout`` that says so. With ``limits.probe_protocols``, a target that
    handshook is tried again offering at most TLS 1.1, then TLS 1.0, to fill
    ``Handshake.legacy_versions`` (through the same STARTTLS preamble, if any).

    ``target.protocol`` says how TLS starts (see the module docstring); with ``None``, an
    implicit-TLS attempt answered by a plaintext greeting is retried once in the protocol the
    greeting announced, and the outcome is that second connection's. ``Handshake.protocol``
    says which was spoken. With ``limits.all_certs``, a target that handshook is tried again
    offering only the other server key types (``tls.KEY_TYPES``) to fill
    ``Handshake.alt_chains``.
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    started_at = datetime.now(UTC)
    context = tls.client_context(limits.tls_min_version)
    protocol = target.protocol
    auto = protocol is None  # --starttls auto: by well-known port, else implicit TLS
    protocol = (
        _STARTTLS_PORTS.get(target.port) if auto else (None if protocol == "tls" else protocol)
    )
    alpn = protocol is None and target.port not in _NO_ALPN_PORTS
    attempt = await _attempt(target, limits, context, slots, on_wait, protocol, alpn=alpn)
    result = attempt.result
    if isinstance(result, tls.Fault):
        retry: str | None = None
        if auto and protocol is None and result.kind is _NOT_TLS:
            retry = starttls.greeting_protocol(result.opening)
        if retry is not None or (alpn and result.refused_alpn):
            # Once more on a new connection, within the same deadline: speaking first in the
            # protocol the plaintext greeting announced, or without the ALPN offer the server
            # refused (nginx's mail proxy ends handshakes offering h2/http1.1).
            protocol, alpn = retry or protocol, False
            attempt = await _attempt(
                target, limits, context, slots, on_wait, protocol, attempt.deadline, alpn=alpn
            )
    failed = attempt.result if attempt.connected is not None else None
    if isinstance(failed, tls.Fault) and _legacy_allowed(limits) and legacy.worth_trying(failed):
        attempt = await _legacy_capture(target, limits, protocol, attempt)
    outcome = _outcome(target, started_at, attempt, protocol or "tls")
    if isinstance(outcome, Handshake) and outcome.legacy_capture:
        return outcome  # no extra handshakes: OpenSSL cannot talk to this server
    if isinstance(outcome, Handshake) and (limits.probe_protocols or limits.all_certs):
        outcome = await _again(outcome, limits, slots, protocol, alpn)
    return outcome


def _legacy_allowed(limits: EngineLimits) -> bool:
    """Legacy capture is on, and the sweep offers every version (a raised ``tls_min_version``
    says not to talk to older servers at all, so they are not captured either)."""
    return limits.legacy_capture and limits.tls_min_version == "TLSv1"


async def _legacy_capture(
    target: Target, limits: EngineLimits, protocol: str | None, failed: _Attempt
) -> _Attempt:
    """One more connection after ``failed`` (within its deadline), sending the hand-built hello
    of ``scanner.engine.legacy``; when that yields no chain either, the first failure stands,
    the capture's reason added to its detail."""
    again = await _attempt(target, limits, None, None, None, protocol, failed.deadline)
    first = failed.result
    if isinstance(again.result, tls.Negotiated) or not isinstance(first, tls.Fault):
        return again
    detail = (
        f"{first.detail}; legacy capture: {again.result.detail.removeprefix('legacy capture: ')}"
    )
    return dataclasses.replace(failed, result=dataclasses.replace(first, detail=detail))


#: Implicit-TLS ports of services that are not HTTP (SMTPS, LDAPS, IMAPS, POP3S, FTPS, XMPPS):
#: no ALPN offer there, since some servers refuse a handshake offering h2/http1.1.
_NO_ALPN_PORTS: Final = frozenset({465, 636, 993, 995, 990, 5223})


async def _again(
    outcome: Handshake,
    limits: EngineLimits,
    slots: trio.Semaphore | None,
    protocol: str | None,
    alpn: bool,
) -> Handshake:
    """The extra handshakes ``limits`` asks for after ``outcome`` (``scanner.engine.rehandshake``),
    each a new connection through the same STARTTLS preamble."""
    target = outcome.target

    async def connect(context: SSL.Context) -> tls.Negotiated | tls.Fault:
        return (await _attempt(target, limits, context, slots, None, protocol, alpn=alpn)).result

    if limits.probe_protocols:
        legacy = await rehandshake.legacy_versions(outcome.tls_version, connect)
        outcome = dataclasses.replace(outcome, legacy_versions=legacy)
    if limits.all_certs:
        alt = await rehandshake.alt_chains(outcome.chain, limits.tls_min_version, connect)
        outcome = dataclasses.replace(outcome, alt_chains=alt)
    return outcome


@dataclasses.dataclass(slots=True)
class _Attempt:
    start: float  # trio clock when the connect began
    connected: float | None  # trio clock when TCP connected, None when it never did
    result: tls.Negotiated | tls.Fault
    deadline: float  # the per-target deadline it ran under


async def _attempt(
    target: Target,
    limits: EngineLimits,
    context: SSL.Context | None,
    slots: trio.Semaphore | None,
    on_wait: Callable[[int], None] | None = None,
    protocol: str | None = None,
    deadline: float | None = None,
    *,
    alpn: bool = True,
) -> _Attempt:
    """One connection: connect, the ``protocol``'s STARTTLS preamble (``None``: implicit
    TLS), wait for a handshake slot, handshake. With ``context`` ``None`` the handshake is a
    legacy capture (``scanner.engine.legacy``): no OpenSSL state, so no slot is waited for.

    One cancel scope covers every phase: it ends at the connect timeout (or the per-target
    deadline, if sooner), and once connected its deadline moves to the handshake timeout (or
    the per-target deadline), once for the preamble and once for the handshake; while the socket
    waits for a handshake slot it is the per-target deadline alone. Same limits as
    a scope per phase inside a deadline scope, at a third of the cost, which a sweep of a /16
    notices. ``deadline`` (trio clock) replaces the per-target deadline counted from now: a
    second attempt at the same target shares the first one's.
    """
    start = trio.current_time()
    if deadline is None:
        deadline = start + limits.target_deadline
    phase, ends = "connect", start + limits.connect_timeout  # the phase and its own timeout
    sock: socket.socket | None = None
    connected: float | None = None
    result: tls.Negotiated | tls.Fault | None = None
    holding = False
    try:
        # Outside any cancel scope: a refusal that is already in (loopback, a LAN) costs no
        # scope and no trip through the event loop, which a sweep of a /16 notices.
        sock, waiting = net.start_connect(target.address, target.port)
        with trio.move_on_at(min(ends, deadline)) as scope:
            if waiting:
                await net.finish_connect(sock, on_wait)
            connected = trio.current_time()
            phase, ends = "handshake", connected + limits.handshake_timeout
            if protocol is not None:
                phase = f"{protocol} preamble"
                scope.deadline = min(ends, deadline)
                result = await starttls.negotiate(protocol, sock, target)
                if result is not None:
                    return _Attempt(start, connected, result, deadline)
                phase = "handshake"
            if context is None:
                scope.deadline = min(ends, deadline)
                result = await legacy.capture(
                    sock, tls.sni_bytes(target.sni), limits.max_chain_bytes
                )
                return _Attempt(start, connected, result, deadline)
            if slots is not None:
                # Waiting for a slot is local queueing: it is bounded by the per-target
                # deadline only, never by the connect or handshake timeout of the server.
                phase = _SLOT_WAIT
                scope.deadline = deadline
                await _acquire(slots)
                holding = True
                phase = "handshake"
            ends = trio.current_time() + limits.handshake_timeout
            scope.deadline = min(ends, deadline)
            result = await tls.handshake(
                sock, context, tls.sni_bytes(target.sni), limits.max_chain_bytes, alpn=alpn
            )
    except OSError as exc:
        result = tls.os_fault(exc)
        if result is None:
            raise
    finally:
        if holding and slots is not None:
            slots.release()
        if sock is not None:
            sock.close()
    if result is None:
        allowed = limits.connect_timeout if connected is None else limits.handshake_timeout
        result = _timed_out(phase, allowed, phase == _SLOT_WAIT or ends > deadline, limits)
    return _Attempt(start, connected, result, deadline)


async def _acquire(semaphore: trio.Semaphore) -> None:
    try:  # checkpoint-free when uncontended
        semaphore.acquire_nowait()
    except trio.WouldBlock:
        await semaphore.acquire()


#: The phase of a connected socket waiting for one of the sweep's handshake slots.
_SLOT_WAIT: Final = "wait for a handshake slot"


def _timed_out(phase: str, allowed: float, at_deadline: bool, limits: EngineLimits) -> tls.Fault:
    """Which bound cut ``phase`` short: its own ``allowed`` timeout, or (``at_deadline``) the
    per-target deadline, which would have come first (and is the only bound of a slot wait)."""
    if phase == _SLOT_WAIT:
        detail = (
            f"no free handshake slot within the {limits.target_deadline:g}s per-target deadline"
            f" (all {limits.handshakes} handshake slots busy); the server was never asked"
        )
        return tls.fault(tls.TIMED_OUT, detail)
    if not at_deadline:
        timeout = "connect" if phase == "connect" else "handshake"
        detail = f"{phase} unfinished after the {allowed:g}s {timeout} timeout"
        return tls.fault(tls.TIMED_OUT, detail)
    detail = f"{phase} unfinished at the {limits.target_deadline:g}s per-target deadline"
    return tls.fault(tls.TIMED_OUT, detail)


def _outcome(
    target: Target, started_at: datetime, attempt: _Attempt, protocol: str | None = None
) -> Outcome:
    """The outcome record of one attempt (``protocol``: how TLS started, for a handshake)."""
    start, connected, result = attempt.start, attempt.connected, attempt.result
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
                legacy_capture=result.legacy_capture,
                group=result.group,
                signature_scheme=result.signature_scheme
                or (
                    legacy.signature_scheme(result.clear_flight, result.cipher, result.tls_version)
                    if result.clear_flight
                    else None
                ),
                key_proven=result.key_proven,
                connect_seconds=mark - start,
                handshake_seconds=now - mark,
                protocol=protocol,
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


async def _probe_guarded(
    target: Target,
    limits: EngineLimits,
    policy: InternalErrors,
    slots: trio.Semaphore | None = None,
    on_wait: Callable[[int], None] | None = None,
) -> Outcome:
    """The one place a bug inside :func:`probe` is either re-raised or recorded."""
    try:
        return await probe(target, limits, slots=slots, on_wait=on_wait)
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


class _Pacer:
    """Hands out start times on a fixed schedule of ``rate`` per second.

    Slots are reserved in order, so several workers share one schedule; a worker that asks late
    gets its slot at once, and after a stall at most :data:`_CATCH_UP` seconds of missed slots
    are handed out back to back before the schedule resumes from there (no drift, no burst).
    """

    __slots__ = ("_due", "_interval")

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._due: float | None = None

    async def turn(self) -> None:
        now = trio.current_time()
        slot = now if self._due is None else max(self._due, now - _CATCH_UP)
        self._due = slot + self._interval
        await trio.sleep_until(slot)


class _Crew:
    """The workers of one sweep, grown on demand up to ``limits.concurrency``.

    A sweep starts :data:`_FIRST_WORKERS` workers. Each time a connect has to wait for the
    network (the kernel did not answer at once), and at least half the workers are waiting
    like that, one more worker is started. On loopback, where refusals and handshakes complete
    almost at once, the crew stays small and cheap to schedule; against dead or distant hosts,
    where every connect waits, it grows to the full concurrency.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        source: Iterator[tuple[int, Target]],
        limits: EngineLimits,
        results: trio.MemorySendChannel[tuple[int, Outcome]],
        policy: InternalErrors,
    ) -> None:
        self._nursery = nursery
        self.source = source
        self.limits = limits
        self.results = results
        self.policy = policy
        self.gates: dict[str, _Gate] = {}
        self.slots = trio.Semaphore(max(1, limits.handshakes))
        self.pacer = _Pacer(limits.rate) if limits.rate else None
        self.workers = 0
        self.waiting = 0
        self.exhausted = False
        self.discover: Discover | None = None
        #: Targets arriving on a channel (SYN discovery's responders) instead of ``source``.
        self.feed: trio.MemoryReceiveChannel[tuple[int, Target]] | None = None

    def grow(self, count: int = 1) -> None:
        for _ in range(min(count, max(1, self.limits.concurrency) - self.workers)):
            self.workers += 1
            self._nursery.start_soon(_work, self, self.results.clone())

    def connect_waits(self, delta: int) -> None:
        """Called with +1 when a connect starts waiting on the network, -1 when it ends."""
        self.waiting += delta
        if delta > 0 and not self.exhausted and self.waiting * 2 >= self.workers:
            self.grow()

    async def next_target(self) -> tuple[int, Target] | None:
        if self.exhausted:
            return None
        if self.feed is not None:
            try:
                item: tuple[int, Target] | None = await self.feed.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                item = None
        else:
            item = next(self.source, None)
        if item is None:
            self.exhausted = True
        return item


#: Workers a sweep starts with; more are added while connects wait on the network.
_FIRST_WORKERS: Final = 64


async def _work(crew: _Crew, results: trio.MemorySendChannel[tuple[int, Outcome]]) -> None:
    """Take targets from the shared source until it runs dry; one connection at a time."""
    async with results:
        while True:
            item = await crew.next_target()
            if item is None:
                return
            index, target = item
            outcome = await _probe_paced(crew, target)
            if crew.discover is not None and (isinstance(outcome, Handshake) or outcome.connected):
                # Follow-ups go out before the target's own outcome (see `sweep`).
                for extra in await _discover_guarded(crew.discover, outcome, crew.policy):
                    await results.send((FOLLOW_UP, await _probe_paced(crew, extra)))
            await results.send((index, outcome))


async def _discover_guarded(
    discover: Discover, outcome: Outcome, policy: InternalErrors
) -> Sequence[Target]:
    """The follow-ups of ``outcome``; a bug in the hook is re-raised or logged (no follow-ups),
    as :func:`_probe_guarded` does for a probe."""
    try:
        return await discover(outcome)
    except Exception as exc:
        if policy == "raise":
            raise
        log.error("internal error in SNI discovery for %s", outcome.target.label(), exc_info=exc)
        return ()


async def _probe_paced(crew: _Crew, target: Target) -> Outcome:
    """One target under the sweep's pacing and its address's connection limit."""
    if crew.pacer is not None:
        await crew.pacer.turn()
    gates = crew.gates
    gate = gates.get(target.address)
    if gate is None:
        gate = gates[target.address] = _Gate(max(1, crew.limits.per_address))
    gate.users += 1
    try:
        # Checkpoint-free when uncontended: the results send yields once a round.
        try:
            gate.semaphore.acquire_nowait()
        except trio.WouldBlock:
            await gate.semaphore.acquire()
        try:
            return await _probe_guarded(
                target, crew.limits, crew.policy, crew.slots, crew.connect_waits
            )
        finally:
            gate.semaphore.release()
    finally:
        gate.users -= 1
        if not gate.users:
            del gates[target.address]


async def sweep(
    targets: Iterable[tuple[int, Target]] | trio.MemoryReceiveChannel[tuple[int, Target]],
    limits: EngineLimits,
    results: trio.MemorySendChannel[tuple[int, Outcome]],
    *,
    internal_errors: InternalErrors = "record",
    discover: Discover | None = None,
) -> None:
    """Probe every target under ``limits``, sending ``(index, outcome)`` to ``results``.

    ``results`` is closed when the sweep ends, however it ends. ``internal_errors`` decides
    what a bug inside a probe does: ``"record"`` turns it into an ``internal_error`` outcome,
    ``"raise"`` lets it out (tests).

    ``discover`` (SNI discovery) is awaited with each outcome of a target from ``targets``
    whose TCP connection was accepted (a handshake, or a ``ScanFailure`` with ``connected``)
    and returns more targets to probe at once, by the same worker, under the same pacing and
    per-address limit: their outcomes are sent as ``(FOLLOW_UP, outcome)`` *before* the
    target's own, so a consumer that has the target's outcome has its follow-ups too.
    Follow-ups are not themselves passed to ``discover`` (no chains of discovery).

    ``targets`` may be a channel instead (the responders of SYN discovery, as they are found):
    workers then wait on it, and the sweep ends when it is closed and drained.
    """
    async with results:
        tls.client_context(limits.tls_min_version)  # a bad minimum version fails before any I/O
        async with trio.open_nursery() as nursery:
            feed = targets if isinstance(targets, trio.MemoryReceiveChannel) else None
            source = iter(()) if feed is not None else iter(targets)  # type: ignore[arg-type]
            crew = _Crew(nursery, source, limits, results, internal_errors)
            crew.discover = discover
            crew.feed = feed
            crew.grow(_FIRST_WORKERS)
