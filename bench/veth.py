"""A second host for the peers that need an Ethernet interface (masscan, zmap): a veth pair
from the benchmark's private namespace into a namespace of its own.

masscan and zmap write whole Ethernet frames through a packet socket; the benchmark namespace's
``lo`` has no Ethernet header, so neither can run there. :class:`PeerHost` (started by
``bench.py run`` only, as PID 1 of its private network namespace) adds a veth pair ``csA`` /
``csB``, moves ``csB`` into a fresh network namespace held by a ``sleep`` child (it dies with the
benchmark's PID namespace), and routes :data:`RANGES` through it: every address of
:data:`CLOSED` is local to the peer (``ip route add local``), so the peer's kernel answers each
SYN with RST; :data:`DEAD` is dropped in the peer's prerouting hook. Both are private
(10.0.0.0/8) addresses that exist only inside these two namespaces; :func:`assert_inside` checks
every target against them, and that it routes through ``csA``, before anything is sent.
"""

from __future__ import annotations

import ipaddress
import subprocess
import time

import measure

LOCAL = "10.200.0.1"
PEER = "10.200.0.2"
ADAPTER = "csA"
PEER_ADAPTER = "csB"
CLOSED = "10.2.0.0/16"
DEAD = "10.3.0.0/16"
RANGES = (CLOSED, DEAD)
#: zmap's own blocklist excludes 10.0.0.0/8; these ranges are ours, so it gets an empty one.
EMPTY_BLOCKLIST = "/dev/null"
PEER_RULES = f"""table inet peer {{
    chain pre {{
        type filter hook prerouting priority -300; policy accept;
        ip daddr {DEAD} tcp flags & (syn | ack) == syn drop
    }}
}}
"""


def _run(*argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0:
        raise measure.BenchError(f"{' '.join(argv)}: {done.stderr.strip()[:200]}")
    return done.stdout


def assert_inside(*targets: str) -> None:
    """Refuse unless every target lies in :data:`RANGES` and routes out through ``csA``."""
    for target in targets:
        net = ipaddress.ip_network(target, strict=False)
        if not any(net.subnet_of(ipaddress.ip_network(r)) for r in RANGES):  # type: ignore[arg-type]
            raise measure.BenchError(f"target {target} is outside {RANGES}; refusing to run")
        route = _run("ip", "-o", "route", "get", str(net.network_address))
        if f" dev {ADAPTER} " not in route:
            raise measure.BenchError(f"{target} does not route through {ADAPTER}: {route}")


class PeerHost:
    """The veth pair and the peer namespace (module docstring); ``mac`` is the peer's."""

    def __init__(self) -> None:
        self.holder: subprocess.Popen[bytes] | None = None
        self.mac = ""

    def start(self) -> None:
        self.holder = subprocess.Popen(["unshare", "--net", "sleep", "3600"])
        time.sleep(0.3)
        peer_ns = f"--net=/proc/{self.holder.pid}/ns/net"
        _run("ip", "link", "add", ADAPTER, "type", "veth", "peer", "name", PEER_ADAPTER)
        _run("ip", "link", "set", PEER_ADAPTER, "netns", str(self.holder.pid))
        _run("ip", "addr", "add", f"{LOCAL}/30", "dev", ADAPTER)
        _run("ip", "link", "set", ADAPTER, "up")
        inside = ["nsenter", peer_ns]
        _run(*inside, "ip", "link", "set", "lo", "up")
        _run(*inside, "ip", "addr", "add", f"{PEER}/30", "dev", PEER_ADAPTER)
        _run(*inside, "ip", "link", "set", PEER_ADAPTER, "up")
        _run(*inside, "ip", "route", "add", "local", CLOSED, "dev", "lo")
        _run(*inside, "ip", "route", "add", "default", "via", LOCAL)
        _run(*inside, "nft", "-f", "-", stdin=PEER_RULES)
        for net in RANGES:
            _run("ip", "route", "add", net, "via", PEER, "dev", ADAPTER)
        links = _run(*inside, "ip", "-o", "link", "show")
        names = sorted(line.split(":")[1].strip().split("@")[0] for line in links.splitlines())
        if names != sorted(["lo", PEER_ADAPTER]):
            raise measure.BenchError(f"peer namespace has interfaces {names}")
        shown = _run(*inside, "ip", "-o", "link", "show", PEER_ADAPTER)
        self.mac = shown.split("link/ether ", 1)[1].split()[0]
        assert_inside(*RANGES)

    def stop(self) -> None:
        if self.holder is not None:
            self.holder.kill()
            self.holder.wait(timeout=10)
            self.holder = None
