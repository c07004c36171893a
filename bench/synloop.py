"""The SYN scan alone: CPU per probe of ``scanner.engine.syn.scan.syn_scan``, no sweep around it.

``python -m bench.synloop`` (root) re-runs itself inside a fresh network namespace of its own
(``unshare --net``), where only ``lo`` exists, and there scans two loopback /16s with a no-op
``settle``: 127.2.0.0/16 on one port, where the kernel answers every SYN with RST (the closed
case: a SYN, a reply parsed and matched per target), and 127.3.0.0/16 on three ports, dropped
in the namespace's prerouting hook (the dead case: SYNs and retries only). It prints the wall
time, the process CPU (user and system) and the CPU per target for each, at ``--rate``. The
packets never leave that namespace: the targets are checked to be loopback before anything is
sent. What the sweep adds on top (pipeline, inventory, start-up) is ``make bench``'s business.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

DROP = """table inet synloop {
    chain pre { type filter hook prerouting priority -300;
        ip daddr 127.3.0.0/16 tcp flags & (syn | ack) == syn drop
    }
}
"""
CASES = (("closed", "127.2.0.0/16", (443,), 0), ("dead", "127.3.0.0/16", (443, 8443, 9443), 1))


def _targets(network: str, ports: tuple[int, ...]) -> Iterator[tuple[int, object]]:
    from scanner.models import Target

    net = ipaddress.ip_network(network)
    first = int(net.network_address)
    index = 0
    for port in ports:
        for key in range(first, first + net.num_addresses):
            address = f"{key >> 24}.{(key >> 16) & 255}.{(key >> 8) & 255}.{key & 255}"
            yield index, Target(address=address, port=port)
            index += 1


def _inside(rate: float) -> int:
    import socket

    import trio

    from scanner.engine.syn.scan import SynSettings, syn_scan
    from scanner.engine.syn.sockets import RawSockets

    links = [name for _, name in socket.if_nameindex()]  # this network namespace's own
    if links != ["lo"]:
        print(f"synloop: refusing to send: interfaces {links}, expected only lo", file=sys.stderr)
        return 3
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=30)
    subprocess.run(["nft", "-f", "-"], input=DROP, text=True, check=True, timeout=30)

    async def settle(index: int, target: object, verdict: object) -> None:
        return None

    for name, network, ports, retries in CASES:
        if not ipaddress.ip_network(network).is_loopback:
            raise SystemExit(f"synloop: {network} is not loopback")
        count = ipaddress.ip_network(network).num_addresses * len(ports)
        settings = SynSettings(rate=rate, retries=retries, wait=1.0)

        async def scan(
            network: str = network, ports: tuple[int, ...] = ports, settings: object = settings
        ) -> object:
            with RawSockets() as sockets:
                return await syn_scan(_targets(network, ports), sockets, settings, settle)  # type: ignore[arg-type]

        before, wall = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        stats = trio.run(scan)
        after, wall = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - wall
        user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
        print(
            f"{name:6s} {network} x {len(ports)} port(s), {count} targets, retries {retries}: "
            f"wall {wall:.2f} s, CPU {user + system:.2f} s (user {user:.2f}, system "
            f"{system:.2f}), {1e6 * (user + system) / count:.1f} us CPU per target "
            f"({1e6 * user / count:.1f} us user); {stats}",
            flush=True,
        )
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.synloop", description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=100_000.0, help="SYNs per second (100000)")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        return _inside(args.rate)
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nft"):
        print("synloop: needs root, unshare and nft", file=sys.stderr)
        return 2
    argv = ["unshare", "--net", sys.executable, "-m", "bench.synloop", "--inside"]
    return subprocess.run([*argv, "--rate", str(args.rate)], check=False, timeout=300).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
