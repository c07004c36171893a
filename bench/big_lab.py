"""Scenario 5's lab: 10,000 TLS endpoints served by one nginx on loopback addresses.

Theory of operation
-------------------
``build_big_lab`` writes, once, everything under ``bench/out/lab-10k`` exactly as ``nginx_lab``
does for the 1,000 lab (``lab_manifest`` issues and records it): its own throwaway root, an RSA
and an ECDSA intermediate, and 10,000 leaves alternating ECDSA P-256 (even index) and RSA-2048
(odd index, sixteen keys shared among them; every certificate is distinct), each endpoint sending
leaf + intermediate. The endpoints are the first 10,000 addresses after the network address of
127.8.0.0/18, that is 127.8.0.1 .. 127.8.39.16, port 443. The tools sweep
``BIG_TARGETS`` (127.8.0.0/19 and 127.8.32.0/21, 10,240 addresses): the other 240 have no
listener and answer with a reset, like the 24 spare addresses of the 1,000 lab's /22.

10,000 listening sockets need more than nginx's defaults: every worker counts each listening
socket as a connection, so ``worker_connections`` is above 10,000 plus the tools' concurrency,
and both the master (which binds them) and the workers need an open-files limit above that.
``BigNginx`` raises the limit for nginx alone (the tools keep the benchmark's own limit) and
counts the sockets in LISTEN state on the lab's addresses (``/proc/net/tcp`` of the benchmark's
namespace) before it counts as up, besides handshaking with sample endpoints.
"""

from __future__ import annotations

import ipaddress
import resource
from collections.abc import Iterator
from pathlib import Path

import lab_manifest
import nginx_lab
from lab_manifest import Endpoint, Lab

BIG_NETWORK = ipaddress.IPv4Network("127.8.0.0/18")
BIG_SIZE = 10_000
BIG_TARGETS = "127.8.0.0/19 127.8.32.0/21"  # 10,240 addresses: 10,000 live, 240 closed
BIG_LIVE = "127.8.0.1-127.8.39.16"
BIG_LAYOUT_VERSION = 1
RSA_KEYS = 16
#: Open files for nginx: 10,000 listening sockets plus connections, within the hard limit here.
NOFILE = 20_000
WORKER_CONNECTIONS = 18_000


def big_addresses() -> Iterator[str]:
    """The 10,000 endpoint addresses, in order."""
    first = int(BIG_NETWORK.network_address) + 1
    for offset in range(BIG_SIZE):
        yield str(ipaddress.IPv4Address(first + offset))


def _generate(root: Path) -> None:
    lab_manifest.write_https_lab(
        root,
        label="10k ",
        addresses=list(big_addresses()),
        rsa_keys=RSA_KEYS,
        domain="bench10k.certscan.test",
        digits=5,
        layout_version=BIG_LAYOUT_VERSION,
        network=str(BIG_NETWORK),
        port=nginx_lab.LAB_PORT,
    )


def _load(root: Path) -> Lab | None:
    return lab_manifest.load_endpoints(
        root,
        layout_version=BIG_LAYOUT_VERSION,
        expected=list(big_addresses()),
        identity=lambda e: e.address,
    )


def nginx_conf(lab: Lab, run_dir: Path) -> str:
    """The 1,000 lab's configuration with room for 10,000 listening sockets."""
    conf = nginx_lab.nginx_conf(lab, run_dir)
    conf = conf.replace("worker_rlimit_nofile 16384;", f"worker_rlimit_nofile {NOFILE};")
    events = f"events {{ worker_connections {WORKER_CONNECTIONS}; }}"
    conf = conf.replace("events { worker_connections 8192; }", events)
    assert f"worker_rlimit_nofile {NOFILE};" in conf
    assert events in conf
    return conf


def build_big_lab(out: Path) -> Lab:
    """The 10,000 lab under ``out/lab-10k``, generated on first use (or when stale) and cached."""
    out = out.resolve()
    root = out / "lab-10k"
    lab = lab_manifest.cached_lab(root, f"the lab of {BIG_SIZE:,} endpoints", _load, _generate)
    run_dir = out / BigNginx.RUN_DIR_NAME
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (run_dir / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    lab.conf.write_text(nginx_conf(lab, run_dir))
    return lab


def listening_on(network: ipaddress.IPv4Network, port: int, tcp: Path) -> int:
    """Distinct addresses of ``network`` with a socket in LISTEN on ``port`` in ``tcp`` (the
    text of ``/proc/net/tcp``: addresses little-endian hex on this machine's byte order)."""
    seen: set[int] = set()
    for line in tcp.read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != "0A":  # 0A: TCP_LISTEN
            continue
        host, _, port_hex = fields[1].partition(":")
        try:
            address = int.from_bytes(bytes.fromhex(host), "little")
            if int(port_hex, 16) == port and ipaddress.IPv4Address(address) in network:
                seen.add(address)
        except ValueError:
            continue
    return len(seen)


class BigNginx(nginx_lab.Nginx):
    """The 10,000 lab's nginx: a raised open-files limit, and every socket listening first."""

    RUN_DIR_NAME = "nginx-10k"

    def start(self, ready_within: float = 120.0) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
        if wanted < BIG_SIZE + 100:
            raise RuntimeError(
                f"open-files hard limit {hard} is below the {BIG_SIZE:,} listening sockets"
            )
        # nginx inherits the raised limit; it is put back before any tool is started.
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        try:
            super().start(ready_within)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        listening = listening_on(BIG_NETWORK, nginx_lab.LAB_PORT, Path("/proc/net/tcp"))
        if listening != BIG_SIZE:
            self.stop()
            raise RuntimeError(
                f"nginx listens on {listening:,} of the {BIG_SIZE:,} addresses: {self._log_tail()}"
            )

    def _sample(self) -> list[Endpoint]:
        return [*self._lab.endpoints[::1000], self._lab.endpoints[-1]]
