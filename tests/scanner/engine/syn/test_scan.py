"""The raw-socket SYN scan with real packets, inside a private network namespace per test.

Listeners are real TLS servers (``tests.peers``) on 127.66.x.y and [::1]; addresses with no
listener answer RST; "dead" ones are dropped by nftables in the namespace's input hook.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator, Iterator

import pytest
import trio

from scanner.engine.syn import packet
from scanner.engine.syn.cookie import Cookies
from scanner.engine.syn.scan import SynSettings, SynStats, Verdict, syn_scan
from scanner.engine.syn.sockets import RawSockets
from scanner.models import Target
from tests import peers
from tests.netns import Netns, private_netns

FAST = SynSettings(rate=20_000, retries=0, wait=0.3)

RULES = """
table inet t {
    counter syns {}
    counter syns_dead {}
    chain input {
        type filter hook input priority 0;
        ip daddr 127.66.0.0/24 tcp flags syn drop
        ip6 daddr ::1 tcp dport 7 drop
    }
    chain output {
        type filter hook output priority 0;
        tcp flags & (syn | ack) == syn ip daddr 127.66.0.0/24 counter name syns_dead
        tcp flags & (syn | ack) == syn counter name syns
    }
}
"""


@pytest.fixture
def ns() -> Iterator[Netns]:
    with private_netns() as made:
        made.nft(RULES)
        with made.entered():
            yield made


@pytest.fixture
async def listeners(ns: Netns) -> AsyncIterator[list[peers.Peer]]:
    ctx = peers.server_context(peers.make_pki().served)
    async with (
        peers.serve("127.66.1.3", peers.tls_server(ctx)) as a,
        peers.serve("127.66.1.9", peers.tls_server(ctx)) as b,
    ):
        yield [a, b]


async def _scan(
    targets: list[Target], settings: SynSettings = FAST, **kwargs: object
) -> tuple[dict[Target, Verdict], list[int], SynStats]:
    verdicts: dict[Target, Verdict] = {}
    order: list[int] = []

    async def settle(index: int, target: Target, verdict: Verdict) -> None:
        order.append(index)
        verdicts[target] = verdict

    with RawSockets() as sockets, trio.fail_after(30):
        stats = await syn_scan(enumerate(targets), sockets, settings, settle, **kwargs)  # type: ignore[arg-type]
    return verdicts, order, stats


async def test_finds_exactly_the_listeners(ns: Netns, listeners: list[peers.Peer]) -> None:
    ports = sorted({p.port for p in listeners})
    live = {(p.address, p.port) for p in listeners}
    addresses = [f"127.66.1.{i}" for i in range(1, 13)] + [f"127.66.0.{i}" for i in range(1, 7)]
    targets = [Target(address=a, port=p) for p in ports for a in addresses]
    verdicts, order, stats = await _scan(targets)
    assert order == list(range(len(targets)))  # settled in plan order
    for target, verdict in verdicts.items():
        if (target.address, target.port) in live:
            assert verdict is Verdict.OPEN, target
        elif target.address.startswith("127.66.0."):
            assert verdict is Verdict.SILENT, target
        else:
            assert verdict is Verdict.REFUSED, target
    assert stats.open == len(live)
    assert stats.silent == 6 * len(ports)
    assert stats.sent == len(targets)
    assert ns.counter("t", "syns_dead") == 6 * len(ports)  # one SYN each, no retries asked


async def test_the_kernel_resets_every_syn_ack(ns: Netns, listeners: list[peers.Peer]) -> None:
    """No socket holds the half-open connections: our kernel answers each SYN-ACK with a RST,
    so the listeners never accept a connection from the scan."""
    ns.nft(
        "table inet r { counter rsts {}\n chain output { type filter hook output priority 0; "
        "ip saddr 127.0.0.0/8 ip daddr { 127.66.1.3, 127.66.1.9 } tcp flags & (syn | rst) == rst "
        "counter name rsts; }\n}"
    )
    verdicts, _, _ = await _scan([p.target() for p in listeners])
    assert set(verdicts.values()) == {Verdict.OPEN}
    assert ns.counter("r", "rsts") >= len(listeners)
    await trio.sleep(0.2)  # an accept would have happened by now
    assert [p.tally.accepted for p in listeners] == [0, 0]


async def test_a_retry_recovers_from_a_dropped_first_syn(
    ns: Netns, listeners: list[peers.Peer]
) -> None:
    peer = listeners[0]
    # Drop the first SYN to the listener (a 24-byte TCP header + 20 bytes of IP = 44 bytes).
    drop_first = (
        "table inet once { chain input { type filter hook input priority -10; "
        f"ip daddr {peer.address} tcp dport {peer.port} tcp flags syn "
        "quota until 45 bytes drop; }\n}"
    )
    ns.nft(drop_first)
    target = peer.target()
    verdicts, _, stats = await _scan([target], SynSettings(rate=1000, retries=1, wait=0.3))
    assert verdicts[target] is Verdict.OPEN
    assert stats.retried == 1
    assert stats.sent == 2
    # Without retries the same drop leaves it silent.
    ns.nft("delete table inet once\n" + drop_first)
    verdicts, _, stats = await _scan([target], SynSettings(rate=1000, retries=0, wait=0.3))
    assert verdicts[target] is Verdict.SILENT


def _forge(src: str, sport: int, dst: str, dport: int, flags: int, ack: int) -> bytes:
    """An IPv4 packet (header included) carrying a bare TCP header."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 12345, ack, 5 << 4, flags, 1024, 0, 0)
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    total = packet.checksum(packet.pseudo_header(s, d, len(tcp)) + tcp)
    tcp = tcp[:16] + struct.pack("!H", total) + tcp[18:]
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, s, d)
    return head + tcp


async def test_forged_outside_and_duplicate_replies_are_ignored(ns: Netns) -> None:
    cookies = Cookies(b"test secret")
    dead = [Target(address=f"127.66.0.{i}", port=443) for i in (1, 2, 3)]
    verdicts: dict[Target, Verdict] = {}

    async def settle(index: int, target: Target, verdict: Verdict) -> None:
        verdicts[target] = verdict

    inject = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    with RawSockets() as sockets, inject, trio.fail_after(30):
        port, here = sockets.v4.port, "127.0.0.1"
        stats = SynStats()

        def reply(src: str, sport: int, flags: int, ack: int) -> None:
            inject.sendto(_forge(src, sport, here, port, flags, ack), (here, 0))

        def right(address: str, rport: int) -> int:
            ours = socket.inet_aton(here)
            return (cookies.cookie(ours, port, socket.inet_aton(address), rport) + 1) % 2**32

        async def forge() -> None:
            while stats.sent < 3:
                await trio.sleep(0.01)
            synack = packet.SYN | packet.ACK
            reply("127.66.0.1", 443, synack, right("127.66.0.1", 443) ^ 1)  # wrong cookie
            reply("127.66.7.7", 443, synack, right("127.66.7.7", 443))  # outside the plan
            reply("127.66.0.2", 444, synack, right("127.66.0.2", 444))  # a port not planned
            reply("127.66.0.3", 443, synack, right("127.66.0.3", 443))  # right: accepted
            reply("127.66.0.3", 443, synack, right("127.66.0.3", 443))  # and again: duplicate
            reply("127.66.0.2", 443, packet.RST, 0)  # a RST without ACK names no probe

        async with trio.open_nursery() as nursery:
            nursery.start_soon(forge)
            await syn_scan(
                enumerate(dead),
                sockets,
                SynSettings(retries=0, wait=1.0),
                settle,
                stats=stats,
                cookies=cookies,
            )
    assert verdicts[dead[0]] is Verdict.SILENT
    assert verdicts[dead[1]] is Verdict.SILENT
    assert verdicts[dead[2]] is Verdict.OPEN
    assert stats.ignored == 3
    assert stats.duplicates == 1


async def test_ipv6_open_refused_and_dropped(ns: Netns) -> None:
    ctx = peers.server_context(peers.make_pki().served)
    async with peers.serve("::1", peers.tls_server(ctx)) as peer:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as bound:
            bound.bind(("::1", 0))  # bound, not listening: SYNs to it are answered RST
            closed = Target(address="::1", port=bound.getsockname()[1])
            targets = [peer.target(), closed, Target(address="::1", port=7)]
            verdicts, _, stats = await _scan(targets)
    assert [verdicts[t] for t in targets] == [Verdict.OPEN, Verdict.REFUSED, Verdict.SILENT]
    assert stats.sent == 3


async def test_a_local_drop_is_a_counted_send_failure(ns: Netns) -> None:
    ns.nft(
        "table inet out { chain output { type filter hook output priority 0; "
        "ip daddr 127.66.5.5 tcp flags syn drop; }\n}"
    )
    target = Target(address="127.66.5.5", port=443)
    verdicts, _, stats = await _scan([target], SynSettings(retries=1, wait=0.1))
    assert verdicts[target] is Verdict.SILENT
    assert stats.send_failures == 2  # the SYN and its retry, each EPERM
    assert stats.sent == 0


async def test_the_window_bounds_probes_in_flight(ns: Netns) -> None:
    targets = [Target(address=f"127.66.1.{i}", port=443) for i in range(1, 41)]
    stats = SynStats()
    peak = 0

    async def settle(index: int, target: Target, verdict: Verdict) -> None:
        nonlocal peak
        peak = max(peak, stats.sent - stats.settled)
        await trio.sleep(0.002)  # a slow consumer: the sender must wait for room

    with RawSockets() as sockets, trio.fail_after(30):
        await syn_scan(
            enumerate(targets),
            sockets,
            SynSettings(retries=0, wait=0.2, window=4),
            settle,
            stats=stats,
        )
    assert stats.refused == 40
    assert 1 <= peak <= 4
