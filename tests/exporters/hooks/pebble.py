"""Pebble (Let's Encrypt's test CA) and pebble-challtestsrv on loopback, for the ACME tests.

``async with run_pebble(tmp, http_port=...) as ca`` starts ``pebble-challtestsrv`` (its DNS on
127.0.0.1 at a free port, every A query answered with 127.0.0.1, no AAAA) and ``pebble`` (its
listeners on 127.0.0.1, a listener certificate generated here, ``PEBBLE_VA_NOSLEEP=1``, the
default 5 % bad-nonce rejection kept on, real validation), with pebble resolving through the
challenge server. ``http_port`` is where pebble's VA sends http-01 requests.

Neither program signals readiness except by a log line written just before it binds, so after the
line appears the port is polled with a bounded number of connects.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from scanner.lab.certgen import make_ca, make_leaf
from tests.conftest import require_tool


def free_port(address: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (bound and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Pebble:
    directory: str  # https://127.0.0.1:PORT/dir
    ca_bundle: Path  # the root of pebble's listener certificate (for the ACME client)
    challtestsrv: str  # http://127.0.0.1:PORT, the challenge server's management API


async def _wait_for_line(process: trio.Process, needle: bytes, log: bytearray) -> None:
    assert process.stdout is not None
    with trio.fail_after(10):
        while needle not in log:
            chunk = await process.stdout.receive_some(4096)
            if not chunk:
                raise RuntimeError(f"exited before {needle!r}: {bytes(log)!r}")
            log += chunk


async def _wait_for_port(port: int) -> None:
    for _ in range(100):  # bounded: at most ~5 s
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            await trio.sleep(0.05)
            continue
        await stream.aclose()
        return
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


async def _drain(process: trio.Process, log: bytearray) -> None:
    assert process.stdout is not None
    while chunk := await process.stdout.receive_some(65536):
        log += chunk[-65536:]


@asynccontextmanager
async def run_pebble(
    tmp: Path,
    *,
    http_port: int,
    nonce_reject: int = 5,
    eab_keys: dict[str, str] | None = None,
) -> AsyncIterator[Pebble]:
    """``eab_keys`` (key id -> base64url HMAC key): External Account Binding is required."""
    pebble = require_tool("pebble")
    challtestsrv = require_tool("pebble-challtestsrv")
    root = make_ca("certscan pebble listener root")
    listener = make_leaf(root, cn="localhost", dns_names=["localhost"], ip_addresses=["127.0.0.1"])
    (tmp / "listener.pem").write_bytes(listener.cert_pem)
    (tmp / "listener.key").write_bytes(listener.key_pem)
    (tmp / "listener-ca.pem").write_bytes(root.cert_pem)
    acme_port, mgmt_port, dns_port, chall_port = (free_port() for _ in range(4))
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{acme_port}",
            "managementListenAddress": f"127.0.0.1:{mgmt_port}",
            "certificate": str(tmp / "listener.pem"),
            "privateKey": str(tmp / "listener.key"),
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": eab_keys is not None,
            "externalAccountMACKeys": eab_keys or {},
        }
    }
    (tmp / "pebble.json").write_text(json.dumps(config))
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("PEBBLE_")
    }  # PEBBLE_VA_ALWAYS_VALID must not leak in
    env |= {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": str(nonce_reject)}
    chall_argv = [
        challtestsrv, "-dns01", f"127.0.0.1:{dns_port}", "-http01", "", "-https01", "",
        "-tlsalpn01", "", "-management", f"127.0.0.1:{chall_port}",
        "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
    ]  # fmt: skip
    pebble_argv = [
        pebble,
        "-config",
        str(tmp / "pebble.json"),
        "-dnsserver",
        f"127.0.0.1:{dns_port}",
    ]
    logs = [bytearray(), bytearray()]
    async with trio.open_nursery() as nursery:
        procs: list[trio.Process] = []
        try:
            for argv, log, line, port in (
                (chall_argv, logs[0], b"Starting management server", chall_port),
                (pebble_argv, logs[1], b"Listening on", acme_port),
            ):
                proc = await trio.lowlevel.open_process(
                    argv, env=env, stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                )  # fmt: skip
                procs.append(proc)
                await _wait_for_line(proc, line, log)
                nursery.start_soon(_drain, proc, log)
                await _wait_for_port(port)
            yield Pebble(
                directory=f"https://127.0.0.1:{acme_port}/dir",
                ca_bundle=tmp / "listener-ca.pem",
                challtestsrv=f"http://127.0.0.1:{chall_port}",
            )
        finally:
            for proc in procs:
                proc.kill()
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await proc.wait()
            nursery.cancel_scope.cancel()
