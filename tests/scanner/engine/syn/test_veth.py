"""The SYN scan against a test host behind a veth pair, as a LAN scan meets one.

Two namespaces made by the test (``ip netns``): the scanner's, and a test host's joined to it
by a veth pair on 10.66.0.0/24 (an address range that exists only inside them). The host holds
10.66.0.2-10.66.0.9: two serve TLS (real servers, ``tests.peers``, their listening sockets
made inside the host's namespace), three have nothing listening (the host's kernel answers
RST) and three are dropped by nftables in the host's input hook (the receiving side, as a dead
host behaves). Replies cross a real Ethernet link with ARP and checksums checked by the host.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest
import trio

from scanner.engine.syn.scan import SynSettings, SynStats, Verdict, syn_scan
from scanner.engine.syn.sockets import RawSockets
from scanner.models import Target
from tests import peers
from tests.netns import Netns, private_netns

HOST = [f"10.66.0.{i}" for i in range(2, 10)]
TLS, RST, DROPPED = HOST[:2], HOST[2:5], HOST[5:]
HOST_RULES = f"""
table inet host {{
    counter syns {{}}
    chain input {{
        type filter hook input priority 0;
        tcp flags & (syn | ack) == syn counter name syns
        ip daddr {{ {", ".join(DROPPED)} }} tcp flags syn drop
    }}
}}
"""


@pytest.fixture
def lan() -> Iterator[tuple[Netns, Netns]]:
    with private_netns() as scanner, private_netns() as host:
        subprocess.run(
            ["ip", "link", "add", "cvA", "netns", scanner.name, "type", "veth", "peer", "name",
             "cvB", "netns", host.name],
            check=True, timeout=30,
        )  # fmt: skip
        scanner.run("ip", "addr", "add", "10.66.0.1/24", "dev", "cvA")
        scanner.run("ip", "link", "set", "cvA", "up")
        for address in HOST:
            host.run("ip", "addr", "add", f"{address}/24", "dev", "cvB")
        host.run("ip", "link", "set", "cvB", "up")
        host.nft(HOST_RULES)
        with scanner.entered():
            yield scanner, host


@pytest.fixture
async def servers(lan: tuple[Netns, Netns]) -> AsyncIterator[list[peers.Peer]]:
    ctx = peers.server_context(peers.make_pki().served)
    async with contextlib.AsyncExitStack() as stack:
        found = []
        for address in TLS:
            with lan[1].entered():  # the listening socket lives in the host's namespace
                found.append(
                    await stack.enter_async_context(peers.serve(address, peers.tls_server(ctx)))
                )
        yield found


async def test_syn_discovery_across_a_veth_link(
    lan: tuple[Netns, Netns], servers: list[peers.Peer]
) -> None:
    ports = sorted({p.port for p in servers})
    live = {(p.address, p.port) for p in servers}
    targets = [Target(address=a, port=p) for p in ports for a in HOST]
    verdicts: dict[Target, Verdict] = {}
    order: list[int] = []

    async def settle(index: int, target: Target, verdict: Verdict) -> None:
        order.append(index)
        verdicts[target] = verdict

    stats = SynStats()
    with RawSockets() as sockets, trio.fail_after(30):
        await syn_scan(
            enumerate(targets), sockets, SynSettings(rate=5000, retries=1, wait=0.5), settle,
            stats=stats,
        )  # fmt: skip
    assert order == list(range(len(targets)))
    for target in targets:
        if (target.address, target.port) in live:
            expected = Verdict.OPEN
        elif target.address in DROPPED:
            expected = Verdict.SILENT
        else:
            expected = Verdict.REFUSED  # a listener on the other port, or none at all
        assert verdicts[target] is expected, target
    assert stats.open == len(live)
    assert stats.silent == len(DROPPED) * len(ports)
    assert stats.ignored == stats.duplicates == stats.send_failures == 0
    # Every SYN reached the host: the silent ones twice (one retry), the others once.
    silent = len(DROPPED) * len(ports)
    assert lan[1].counter("host", "syns") == len(targets) + silent
    # No connection was ever accepted: the scanner's kernel reset each SYN-ACK.
    await trio.sleep(0.2)
    assert [p.tally.accepted for p in servers] == [0, 0]
