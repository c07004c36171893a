"""The SYN scan: raw sockets, a paced sender, a cookie-checking receiver, verdicts in plan order.

Theory of operation
-------------------
:func:`syn_scan` runs three tasks over one :class:`RawSockets`:

* the **sender** takes targets from the plan lazily, at most ``settings.window`` in flight, and
  sends one SYN each (the sequence number is the cookie of its 4-tuple) on a fixed schedule of
  ``settings.rate`` packets per second, a burst of the slots due at each wake-up. A probe still
  silent ``settings.wait`` seconds after its SYN is sent again, up to ``settings.retries``
  times, sharing the same schedule. ``sendto`` failing (``EPERM`` from a local firewall,
  ``ENOBUFS``, no route) is counted in :attr:`SynStats.send_failures` and the probe carries on;
  no route at all (the source lookup fails) makes it ``unreachable`` at once.
* the **receiver** reads every TCP packet the raw sockets see, keeps those addressed to our
  source port that are SYN-ACK or RST-ACK, and accepts one only when its acknowledgement number
  is our cookie for that 4-tuple plus one *and* a probe to that address and port is in flight.
  Anything else addressed to us (a wrong cookie, an address or port outside the plan, a reply
  after its probe settled) is counted in :attr:`SynStats.ignored`; a second reply for a probe
  already answered in :attr:`SynStats.duplicates`.
* the **settler** walks the probes in plan order and hands each verdict to ``settle`` as soon
  as it is known: ``open`` (SYN-ACK), ``refused`` (RST), ``silent`` (no reply after the last
  retry and ``wait``), ``unreachable``. ``settle`` may block (the TLS phase is full): the
  window then fills and the sender waits, so memory is bounded by ``window`` probes whatever
  the size of the plan.

The source port is one the kernel gave a plain TCP socket we keep bound (never listening)
for the whole scan, so no connect() of the TLS phase can pick it; the kernel has no socket
for the SYN-ACKs and answers each with a RST. Our source address for each destination is the
one the kernel's routing picks (a UDP socket ``connect``, which sends nothing), cached per
address.

The sockets themselves (raw, the reserved port, route lookups, the kernel-side port filter)
are :mod:`scanner.engine.syn.sockets`; raw sockets need root or ``CAP_NET_RAW``, and
:func:`~scanner.engine.syn.sockets.raw_privilege` is the check.
"""

from __future__ import annotations

import collections
import enum
import errno
import socket
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final

import trio

from scanner.engine.syn import packet
from scanner.engine.syn.cookie import Cookies
from scanner.engine.syn.defaults import DEFAULT_RATE, DEFAULT_RETRIES, DEFAULT_WAIT
from scanner.engine.syn.sockets import Family, RawSockets
from scanner.models import Target

#: Probes in flight at most (sent, not yet settled): the scan's only per-probe memory, a few
#: hundred bytes each. Dead addresses hold their place for ``(retries + 1) * wait`` seconds,
#: so the window caps the rate at ``window / ((retries + 1) * wait)`` targets per second.
DEFAULT_WINDOW: Final = 131_072
#: Slots sent back to back at one wake-up at most, how far a stall is made up, and how far
#: ahead of its slot a SYN may go (so the sender wakes every few milliseconds, not per SYN).
_BURST: Final = 512
_CATCH_UP: Final = 0.02
_AHEAD: Final = 0.002
#: Packets read in a row before the receiver yields to the other tasks.
_READ_RUN: Final = 1024
#: Packets the sender reads at most before a burst (the whole queue, in practice).
_DRAIN: Final = 65_536
#: sendto errors that are a failed send, not a bug: a local firewall, a full queue, no route.
_SEND_ERRORS: Final = frozenset(
    {
        errno.EPERM,
        errno.EACCES,
        errno.ENOBUFS,
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.EADDRNOTAVAIL,
        errno.EINVAL,
        errno.EMSGSIZE,
    }
)


class Verdict(enum.Enum):
    OPEN = "open"  # SYN-ACK: something listens
    REFUSED = "refused"  # RST: nothing listens
    SILENT = "silent"  # no reply to any SYN
    UNREACHABLE = "unreachable"  # no route to the address


@dataclass(frozen=True, slots=True, kw_only=True)
class SynSettings:
    """``rate``: SYNs per second (retries included); ``retries``: SYNs sent again to a silent
    probe; ``wait``: seconds after a SYN before it counts as unanswered; ``window``: probes in
    flight at most."""

    rate: float = DEFAULT_RATE
    retries: int = DEFAULT_RETRIES
    wait: float = DEFAULT_WAIT
    window: int = DEFAULT_WINDOW

    def __post_init__(self) -> None:
        if not self.rate > 0 or self.retries < 0 or not self.wait >= 0 or self.window < 1:
            raise ValueError("rate and window must be positive, retries and wait not negative")


@dataclass(slots=True)
class SynStats:
    """What one SYN scan did (counts of packets and of settled probes)."""

    sent: int = 0  # SYNs the kernel accepted
    send_failures: int = 0  # SYNs sendto refused (EPERM, ENOBUFS, no route...)
    retried: int = 0  # SYNs sent again to a silent probe
    open: int = 0
    refused: int = 0
    silent: int = 0
    unreachable: int = 0
    ignored: int = 0  # replies to our port matching no probe in flight
    duplicates: int = 0  # further replies for a probe already answered

    @property
    def settled(self) -> int:
        return self.open + self.refused + self.silent + self.unreachable


class _Slot:
    """One probe in flight: an (address, port) and how its SYNs went. Targets sharing an
    address and port (several SNIs) share the slot."""

    __slots__ = (
        "address",
        "deadline",
        "family",
        "key",
        "port",
        "remote",
        "segment",
        "tries",
        "users",
        "verdict",
    )

    def __init__(self, key: tuple[bytes, int], address: str, port: int) -> None:
        self.key = key
        self.address = address
        self.port = port
        self.remote = key[0]
        self.family: Family | None = None
        self.tries = 0
        self.deadline = 0.0
        self.users = 1
        self.verdict: Verdict | None = None
        self.segment: bytes | None = None  # the SYN, kept for its retries


Settle = Callable[[int, Target, Verdict], Awaitable[None]]


async def syn_scan(
    targets: Iterable[tuple[int, Target]],
    sockets: RawSockets,
    settings: SynSettings,
    settle: Settle,
    *,
    stats: SynStats | None = None,
    cookies: Cookies | None = None,
) -> SynStats:
    """SYN-probe every target of ``targets`` and ``await settle(index, target, verdict)`` for
    each, in the order of ``targets`` (``settle`` need not checkpoint: the scan yields between
    runs of verdicts); returns the counts (``stats`` when given, updated as the
    scan goes, so a progress display can read it)."""
    scan = _Scan(
        iter(targets), sockets, settings, settle, stats or SynStats(), cookies or Cookies()
    )
    async with trio.open_nursery() as nursery:
        for family in (sockets.v4, sockets.v6):
            if family is not None:
                nursery.start_soon(scan.receive, family)
        async with trio.open_nursery() as work:
            work.start_soon(scan.send)
            work.start_soon(scan.settle_all)
        nursery.cancel_scope.cancel()
    return scan.stats


class _Scan:
    def __init__(
        self,
        source: Iterator[tuple[int, Target]],
        sockets: RawSockets,
        settings: SynSettings,
        settle: Settle,
        stats: SynStats,
        cookies: Cookies,
    ) -> None:
        self.source = source
        self.sockets = sockets
        self.settings = settings
        self.on_settle = settle
        self.stats = stats
        self.cookies = cookies
        self.order: collections.deque[tuple[int, Target, _Slot]] = collections.deque()
        self.retry: collections.deque[_Slot] = collections.deque()
        self.flight: dict[tuple[bytes, int], _Slot] = {}
        self.exhausted = False
        self.sending_done = False
        self.wake = trio.Event()
        self.families = [f for f in (sockets.v4, sockets.v6) if f is not None]

    # --- sender -----------------------------------------------------------------------------

    def _next_new(self) -> _Slot | None:
        """The next planned target needing a SYN (joining a slot in flight if one exists)."""
        order, flight, window, source = self.order, self.flight, self.settings.window, self.source
        v4, v6 = self.sockets.v4, self.sockets.v6
        while not self.exhausted and len(order) < window:
            item = next(source, None)
            if item is None:
                self.exhausted = True
                return None
            target = item[1]
            address = target.address
            if ":" in address:
                family, remote = v6, _pton(socket.AF_INET6, address)
            else:
                family, remote = v4, _pton(socket.AF_INET, address)
            key = (remote, target.port)
            slot = flight.get(key)
            if slot is not None:
                slot.users += 1
                order.append((item[0], target, slot))
                continue
            slot = flight[key] = _Slot(key, address, target.port)
            slot.family = family
            order.append((item[0], target, slot))
            if family is None:
                slot.verdict = Verdict.UNREACHABLE  # IPv6 is off on this host
                continue
            return slot
        return None

    def _next_due(self, now: float) -> _Slot | None:
        retry = self.retry
        while retry:
            slot = retry[0]
            if slot.verdict is not None:
                retry.popleft()
                continue
            if slot.deadline > now:
                return None
            retry.popleft()
            self.stats.retried += 1
            return slot
        return None

    async def send(self) -> None:
        interval = 1.0 / self.settings.rate
        due = trio.current_time()
        try:
            while True:
                now = trio.current_time()
                due = max(due, now - _CATCH_UP)
                if due > now:
                    await trio.sleep_until(due)
                    continue
                # The slots due by now + _AHEAD, as one burst: a wake-up per packet would cost
                # more than the packet. The average rate stays exact (``due`` moves per SYN).
                slots = min(_BURST, int((now + _AHEAD - due) / interval) + 1)
                for family in self.families:
                    self.read(family, _DRAIN)
                sent, blocked = self._burst(slots, now)
                if blocked is not None:  # a full send buffer: wait for room (bounded)
                    await self._send_blocked(*blocked)
                    sent += 1
                due += sent * interval
                if sent:
                    self.wake.set()
                    await trio.lowlevel.checkpoint()
                    continue
                if self.exhausted and not self.retry:
                    return
                # Nothing due: the next retry, or room in the window, whichever comes first.
                await trio.sleep_until(
                    min(self.retry[0].deadline, now + 0.005) if self.retry else now + 0.005
                )
        finally:
            self.sending_done = True
            self.wake.set()

    def _burst(
        self, slots: int, now: float
    ) -> tuple[int, tuple[Family, bytes, tuple[object, ...]] | None]:
        """Send up to ``slots`` SYNs (retries due first, then new targets) without yielding:
        how many went out, and the one that met a full send buffer (to be sent once there is
        room), if any."""
        stats, retry, retries = self.stats, self.retry, self.settings.retries
        deadline = now + self.settings.wait
        cookie = self.cookies.cookie
        sent = 0
        while sent < slots:
            slot = self._next_due(now) if retry else None
            if slot is None:
                slot = self._next_new()
                if slot is None:
                    break
            family = slot.family
            assert family is not None
            slot.tries += 1
            slot.deadline = deadline
            segment = slot.segment
            if segment is None:  # the first SYN; a retry sends the same bytes
                local = family.sources.get(slot.address, b"")
                if local == b"":
                    local = family.source(slot.address)
                if local is None or len(local) != len(slot.remote):
                    slot.verdict = Verdict.UNREACHABLE
                    sent += 1
                    continue
                template = family.templates.get(local) or family.template(local)
                seq = cookie(local, family.port, slot.remote, slot.port)
                segment = template.build(slot.remote, slot.port, seq)
                if retries:
                    slot.segment = segment
            if slot.tries <= retries:
                retry.append(slot)
            where = (slot.address, 0) if family.v4 else (slot.address, 0, 0, 0)
            sent += 1
            try:
                family.raw.sendto(segment, where)
            except BlockingIOError:
                return sent - 1, (family, segment, where)
            except OSError as exc:
                if exc.errno not in _SEND_ERRORS:
                    raise
                stats.send_failures += 1
                continue
            stats.sent += 1
        return sent, None

    async def _send_blocked(
        self, family: Family, segment: bytes, where: tuple[object, ...]
    ) -> None:
        for _ in range(100):  # a full send buffer: wait for room, a bounded number of times
            await trio.lowlevel.wait_writable(family.raw)
            try:
                family.raw.sendto(segment, where)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno not in _SEND_ERRORS:
                    raise
                self.stats.send_failures += 1
                return
            self.stats.sent += 1
            return
        self.stats.send_failures += 1

    # --- receiver ---------------------------------------------------------------------------

    async def receive(self, family: Family) -> None:
        while True:
            if self.read(family, _READ_RUN) < _READ_RUN:
                await trio.lowlevel.wait_readable(family.raw)
            else:
                await trio.lowlevel.checkpoint()

    def read(self, family: Family, limit: int) -> int:
        """Accept the replies waiting on ``family``'s raw socket, at most ``limit``; how many
        packets were read. The sender calls it too, before each burst: a retry must not go
        out to a target whose answer is already in the queue."""
        raw, port, accept = family.raw, family.port, self.accept
        read = 0
        if family.v4:  # into one reused buffer, parsed in place
            buffer, recv_into, parse = family.buffer, raw.recv_into, packet.reply_ipv4
            while read < limit:
                try:
                    size = recv_into(buffer)
                except BlockingIOError:
                    break
                read += 1
                reply = parse(buffer, size)
                if reply is not None and reply[3] == port:
                    accept(reply, port)
            return read
        while read < limit:
            try:
                data, ancillary, _, address = raw.recvmsg(128, socket.CMSG_SPACE(20))
            except BlockingIOError:
                break
            read += 1
            reply = _parse_v6(data, ancillary, address[0])
            if reply is not None and reply[3] == port:
                accept(reply, port)
        return read

    def accept(self, reply: packet.Reply, port: int) -> None:
        """Match one reply addressed to our port to its probe (module docstring)."""
        remote, local, remote_port, _, ack, flags = reply
        syn_ack = flags & _SYN_ACK_RST == _SYN_ACK
        if not syn_ack and flags & _RST_ACK != _RST_ACK:
            return
        if ack != (self.cookies.cookie(local, port, remote, remote_port) + 1) & 0xFFFFFFFF:
            self.stats.ignored += 1
            return
        slot = self.flight.get((remote, remote_port))
        if slot is None or slot.tries == 0:
            self.stats.ignored += 1
            return
        if slot.verdict is not None:
            self.stats.duplicates += 1
            return
        slot.verdict = Verdict.OPEN if syn_ack else Verdict.REFUSED
        self.wake.set()

    # --- settler ----------------------------------------------------------------------------

    async def settle_all(self) -> None:
        order, retries = self.order, self.settings.retries
        run = 0
        while True:
            run += 1
            if run >= _READ_RUN:  # a long run of settled probes: let the others in
                run = 0
                await trio.lowlevel.checkpoint()
            if not order:
                if self.sending_done:
                    return
                run = 0
                await self._sleep(None)
                continue
            index, target, slot = order[0]
            verdict = slot.verdict
            if verdict is None:
                if slot.tries <= retries or trio.current_time() < slot.deadline:
                    run = 0
                    await self._sleep(slot.deadline if slot.tries > retries else None)
                    continue
                verdict = Verdict.SILENT
            order.popleft()
            slot.users -= 1
            if not slot.users:
                self.flight.pop(slot.key, None)
                if slot.verdict is None:
                    slot.verdict = verdict  # the late reply of a settled probe is ignored
            self._count(verdict)
            await self.on_settle(index, target, verdict)

    async def _sleep(self, until: float | None) -> None:
        """Until something changes (a reply, a send) or ``until``."""
        self.wake = trio.Event()
        with trio.move_on_at(until if until is not None else trio.current_time() + 0.05):
            await self.wake.wait()

    def _count(self, verdict: Verdict) -> None:
        match verdict:
            case Verdict.OPEN:
                self.stats.open += 1
            case Verdict.REFUSED:
                self.stats.refused += 1
            case Verdict.SILENT:
                self.stats.silent += 1
            case Verdict.UNREACHABLE:
                self.stats.unreachable += 1


_pton: Final = socket.inet_pton
_SYN_ACK: Final = packet.SYN | packet.ACK
_SYN_ACK_RST: Final = packet.SYN | packet.ACK | packet.RST
_RST_ACK: Final = packet.RST | packet.ACK


def _parse_v6(
    data: bytes, ancillary: list[tuple[int, int, bytes]], source: str
) -> packet.Reply | None:
    """A reply from a raw IPv6 socket: the source from ``recvmsg``, our address from the
    ``IPV6_PKTINFO`` message (None without one)."""
    for level, kind, value in ancillary:
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(value) >= 16:
            try:
                remote = socket.inet_pton(socket.AF_INET6, source.split("%")[0])
            except OSError:
                return None
            return packet.reply_tcp(data, remote, value[:16])
    return None
