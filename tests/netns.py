"""Private network namespaces for the tests that send raw packets.

:func:`private_netns` makes a fresh namespace (``ip netns add``) with only ``lo`` up, and
deletes it afterwards. :meth:`Netns.entered` moves the calling thread into it (``setns``, per
thread on Linux) and back: sockets created meanwhile, by the test's trio run on the main thread,
live in the namespace, and stay there when the thread leaves. Nothing sent from inside can reach
another network: the namespace has no interface but its own loopback, so even a scanner bug that
sent to a public address would meet "network unreachable", and the tests count packets on ``lo``
to show it never tried.

Dead hosts are nftables drops in the ``input`` hook (the receiving side, as a real silent host
behaves; a drop in ``output`` would make ``sendto`` fail instead). Counters in the ``output``
hook count what was sent.

Needs root (or CAP_SYS_ADMIN and CAP_NET_RAW), ``ip`` and ``nft``: under ``CI=true`` a test
fails without them, on a local unprivileged run it is skipped with the reason.
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import trio

from scanner.engine.syn.sockets import raw_privilege
from tests.conftest import missing, require_tool

_CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


@dataclass(frozen=True, slots=True)
class Netns:
    name: str

    def run(self, *argv: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            ["ip", "netns", "exec", self.name, *argv],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed in {self.name}: {done.stderr.strip()}")
        return done.stdout

    def nft(self, ruleset: str) -> None:
        """Load an nftables ruleset (``nft -f``) in the namespace."""
        self.run("nft", "-f", "-", stdin=ruleset)

    def counter(self, table: str, name: str) -> int:
        """Packets of the named counter ``name`` in ``inet`` table ``table``."""
        text = self.run("nft", "list", "counter", "inet", table, name)
        found = re.search(r"packets (\d+)", text)
        assert found, text
        return int(found.group(1))

    def lo_packets(self) -> int:
        """Packets ``lo`` has transmitted (everything sent, to any address, goes through it)."""
        text = self.run("cat", "/sys/class/net/lo/statistics/tx_packets")
        return int(text.strip())

    @contextmanager
    def entered(self) -> Iterator[None]:
        """This thread inside the namespace for the ``with`` block, then back where it was."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
            try:
                _setns(target)
            finally:
                os.close(target)
            try:
                yield
            finally:
                _setns(home)
                _rehome_thread_cache(home)
        finally:
            os.close(home)


def _rehome_thread_cache(home: int) -> None:
    """Move trio's idle worker threads back home too.

    A thread started while this one was inside the namespace (``trio.to_thread``, e.g. the
    inventory's writes) stays there after the ``with`` block, and trio keeps idle workers for
    later calls: a later test resolving or connecting from such a worker would be in the wrong
    network. One job per idle worker, each holding it at a barrier, reaches every one of them.
    """
    from trio._core._thread_cache import THREAD_CACHE  # no public way to reach idle workers

    idle = len(getattr(THREAD_CACHE, "_idle_workers", ()))  # a later trio may rename it
    if not idle:
        return
    barrier = threading.Barrier(idle + 1, timeout=10)

    def rehome() -> None:
        _setns(home)
        barrier.wait()

    for _ in range(idle):
        trio.lowlevel.start_thread_soon(rehome, lambda _: None)
    barrier.wait()


def require_netns() -> None:
    """Fail (CI) or skip (locally) unless this process can make namespaces and raw sockets."""
    require_tool("ip")
    require_tool("nft")
    if os.geteuid() != 0 or not raw_privilege():
        missing("raw packets and network namespaces need root (run the tests as root)")


@contextmanager
def private_netns() -> Iterator[Netns]:
    """A fresh namespace with ``lo`` up (IPv4 127/8 and IPv6 ::1), deleted afterwards."""
    require_netns()
    ns = Netns(f"certscan-t-{uuid.uuid4().hex[:10]}")
    subprocess.run(["ip", "netns", "add", ns.name], check=True, timeout=30)
    try:
        subprocess.run(["ip", "-n", ns.name, "link", "set", "lo", "up"], check=True, timeout=30)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns.name], check=False, timeout=30)
