"""Loopback servers for the engine tests: one healthy TLS server and the peers that misbehave.

Every server binds a distinct 127.x address at port 0 and runs inside the test's trio run, so a
test starts it with ``async with serve(address, handler) as peer`` and gets ``peer.address`` and
``peer.port`` back. Each accepted connection is counted in a :class:`Tally` (accepted, open now,
peak open at once), which is how the tests observe concurrency limits and that cancellation
leaves no socket behind: ``await tally.wait_for(lambda t: t.open == 0)`` blocks on an event
that every change of the counts sets, never on a sleep.

Handlers are small async functions of one accepted :class:`trio.SocketStream`. The healthy ones
use the standard library's ``ssl`` (system OpenSSL) through :class:`trio.SSLStream`, so the
client under test (pyOpenSSL, cryptography's bundled OpenSSL) meets a different implementation.
"""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from scanner.lab.certgen import Issued, chain_pem, make_ca, make_leaf
from scanner.models import Target

Handler = Callable[[trio.SocketStream], Awaitable[None]]

#: The loopback broadcast address. Linux refuses a TCP connect to it locally with ENETUNREACH
#: before any packet is sent, which makes it the one honest "unreachable" target on loopback.
UNREACHABLE_ADDRESS = "127.255.255.255"


@dataclass(eq=False)
class Tally:
    """Connections seen by one or more servers (share one tally to count across servers).

    ``open``/``peak`` count accepted connections until the server notices they are gone.
    ``busy``/``busy_peak`` count connections inside a slow server's deliberate pause, a window
    in which the client's socket is certainly still open: that is the one to compare with a
    client-side limit, since a server notices a close a moment after the client made it.
    """

    accepted: int = 0
    open: int = 0
    peak: int = 0
    busy: int = 0
    busy_peak: int = 0
    _changed: trio.Event = field(default_factory=trio.Event)

    def _poke(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _note(self, delta: int) -> None:
        if delta > 0:
            self.accepted += 1
        self.open += delta
        self.peak = max(self.peak, self.open)
        self._poke()

    async def pause(self, seconds: float) -> None:
        """Hold the current connection ``seconds`` long, counted as busy."""
        self.busy += 1
        self.busy_peak = max(self.busy_peak, self.busy)
        self._poke()
        try:
            await trio.sleep(seconds)
        finally:
            self.busy -= 1
            self._poke()

    async def wait_for(self, predicate: Callable[[Tally], bool]) -> None:
        """Return once ``predicate(self)`` holds; re-checked on every connection change."""
        while not predicate(self):
            await self._changed.wait()


@dataclass(frozen=True)
class Peer:
    address: str
    port: int
    tally: Tally

    def target(self, sni: str | None = None) -> Target:
        return Target(address=self.address, port=self.port, sni=sni)


@asynccontextmanager
async def serve(
    address: str, handler: Handler, *, tally: Tally | None = None
) -> AsyncIterator[Peer]:
    """Listen on ``address`` port 0 and run ``handler`` for each connection until exit."""
    tally = tally if tally is not None else Tally()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    await sock.bind((address, 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    listener = trio.SocketListener(sock)

    async def tracked(stream: trio.SocketStream) -> None:
        tally._note(+1)
        try:
            async with stream:
                await handler(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the client went away; that is what clients do
        finally:
            tally._note(-1)

    async def accept_loop() -> None:
        async with listener, trio.open_nursery() as handlers:
            while True:
                stream = await listener.accept()
                handlers.start_soon(tracked, stream)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_loop)
        yield Peer(address, port, tally)
        nursery.cancel_scope.cancel()


@contextmanager
def closed_port(address: str) -> Iterator[Target]:
    """A port that is bound but not listening: every SYN to it is answered with RST."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((address, 0))
        yield Target(address=address, port=sock.getsockname()[1])
    finally:
        sock.close()


@contextmanager
def full_backlog(address: str) -> Iterator[Target]:
    """A listener that never accepts, its one-slot queue already full: the kernel drops every
    further SYN, exactly as a firewall that drops silently, so connects hang until timeout."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind((address, 0))
        listener.listen(0)
        filler.connect(listener.getsockname())  # takes the only queue slot
        yield Target(address=address, port=listener.getsockname()[1])
    finally:
        filler.close()
        listener.close()


# --- certificates and server contexts -------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A root, an intermediate and an EC leaf it issued; ``served`` is what a server sends."""

    root: Issued
    intermediate: Issued
    leaf: Issued

    @property
    def served(self) -> tuple[Issued, ...]:
        return (self.leaf, self.intermediate)


def make_pki(*, san_count: int = 0) -> Pki:
    """A fresh hierarchy; ``san_count`` pads the leaf with that many extra DNS names."""
    root = make_ca("certscan test root")
    intermediate = make_ca("certscan test intermediate", issuer=root)
    names = ["localhost", *(f"padding-{i:05d}.certscan.test" for i in range(san_count))]
    leaf = make_leaf(intermediate, cn="localhost", dns_names=names, ip_addresses=["127.0.0.1"])
    return Pki(root=root, intermediate=intermediate, leaf=leaf)


def server_context(
    chain: Sequence[Issued],
    *,
    minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
    maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
    ciphers: str | None = None,
    alpn: Sequence[str] = (),
    client_ca: Issued | None = None,
) -> ssl.SSLContext:
    """A stdlib server context serving ``chain`` (leaf first; the leaf's key is used)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():  # the stdlib deprecates TLS 1.0/1.1; old servers exist
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = minimum
        ctx.maximum_version = maximum
    if ciphers:
        ctx.set_ciphers(ciphers)
    with tempfile.TemporaryDirectory(prefix="certscan-peer-") as tmp:
        cert_file, key_file = Path(tmp, "chain.pem"), Path(tmp, "key.pem")
        cert_file.write_bytes(chain_pem(*chain))
        key_file.write_bytes(chain[0].key_pem)
        ctx.load_cert_chain(cert_file, key_file)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=client_ca.cert_pem.decode())
    return ctx


@asynccontextmanager
async def openssl_server(
    address: str, served: Sequence[Issued], *options: str, files: dict[str, bytes] | None = None
) -> AsyncIterator[Target]:
    """``openssl s_server`` (the system OpenSSL, in C) serving ``served`` on ``address``.

    For what the stdlib cannot do: staple an OCSP response (``-status_file``), or send the
    alert a failed handshake ends with (trio's ``SSLStream`` drops it and just closes).
    ``files`` are written next to the certificates; name them in ``options`` as ``{dir}/name``.
    Skips the test when the ``openssl`` command is missing.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    with tempfile.TemporaryDirectory(prefix="certscan-s_server-") as tmp:
        for name, data in {
            "leaf.pem": served[0].cert_pem,
            "key.pem": served[0].key_pem,
            "chain.pem": chain_pem(*served[1:]),
            **(files or {}),
        }.items():
            Path(tmp, name).write_bytes(data)
        command = [
            openssl, "s_server", "-accept", f"{address}:0",
            "-cert", f"{tmp}/leaf.pem", "-key", f"{tmp}/key.pem",
            *(["-cert_chain", f"{tmp}/chain.pem"] if served[1:] else []),
            *(option.replace("{dir}", tmp) for option in options),
        ]  # fmt: skip
        # stdin stays an open pipe: s_server quits when its stdin reaches end of file.
        process = await trio.lowlevel.open_process(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            assert process.stdout is not None
            banner = b""
            with trio.fail_after(10):
                while not re.search(rb"ACCEPT \S+:(\d+)\s", banner):
                    chunk = await process.stdout.receive_some(4096)
                    if not chunk:
                        raise RuntimeError(f"openssl s_server did not start: {banner!r}")
                    banner += chunk
            match = re.search(rb"ACCEPT \S+:(\d+)\s", banner)
            assert match is not None
            yield Target(address=address, port=int(match[1]), sni="localhost")
        finally:
            process.kill()
            await process.wait()


def strict_sni(contexts: dict[str, ssl.SSLContext]) -> ssl.SSLContext:
    """A context that answers only for the names in ``contexts`` (each with its own
    certificate) and refuses a ClientHello without SNI or with any other name with an
    ``unrecognized_name`` alert, as CDNs and ingress controllers do."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # no certificate of its own: it never serves

    def choose(obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> int | None:
        if name is None or name not in contexts:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        obj.context = contexts[name]
        return None

    ctx.sni_callback = choose
    return ctx


# --- handlers -------------------------------------------------------------------------------


async def _until_eof(stream: trio.abc.ReceiveStream) -> None:
    while await stream.receive_some(4096):
        pass


def tls_server(ctx: ssl.SSLContext, *, delay: float = 0.0, tally: Tally | None = None) -> Handler:
    """A healthy TLS server; with ``delay`` it first pauses that long (counted in ``tally``)."""

    async def handle(stream: trio.SocketStream) -> None:
        if delay and tally is not None:
            await tally.pause(delay)  # a slow server, so overlapping connections can be counted
        tls = trio.SSLStream(stream, ctx, server_side=True)
        await tls.do_handshake()
        await _until_eof(tls)

    return handle


def tls_server_with_alerts(ctx: ssl.SSLContext) -> Handler:
    """A TLS server over memory BIOs that, unlike ``trio.SSLStream``, sends the alert a failed
    handshake ends with (an SNI callback's ``unrecognized_name``) before it closes."""

    async def handle(stream: trio.SocketStream) -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(incoming, outgoing, server_side=True)
        while True:
            try:
                obj.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            except ssl.SSLError:
                if pending := outgoing.read():
                    await stream.send_all(pending)
                return
            if pending := outgoing.read():
                await stream.send_all(pending)
            if done:
                await _until_eof(stream)
                return
            data = await stream.receive_some(65536)
            if not data:
                return
            incoming.write(data)

    return handle


async def silent(stream: trio.SocketStream) -> None:
    """Accepts and never speaks; holds the connection until the client leaves."""
    await _until_eof(stream)


def drip(interval: float = 1.0, payload: bytes = b"\x16\x03\x03\x40\x00") -> Handler:
    """One byte every ``interval`` seconds, forever: a plausible record header, then zeros."""

    async def handle(stream: trio.SocketStream) -> None:
        sent = 0
        while True:
            byte = payload[sent : sent + 1] or b"\x00"
            await stream.send_all(byte)
            sent += 1
            await trio.sleep(interval)

    return handle


def speaks(data: bytes, first_read: bool = False) -> Handler:
    """Sends ``data`` (after reading the client's first bytes when ``first_read``), then waits."""

    async def handle(stream: trio.SocketStream) -> None:
        if first_read:
            await stream.receive_some(65536)
        await stream.send_all(data)
        await _until_eof(stream)

    return handle


async def reset_on_accept(stream: trio.SocketStream) -> None:
    """Closes with SO_LINGER 0, so the kernel sends RST instead of FIN."""
    stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


async def hang_up(stream: trio.SocketStream) -> None:
    """Reads the client hello and closes cleanly (FIN): a server that rejects by hanging up."""
    await stream.receive_some(65536)


SSH_BANNER = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"
HTTP_ANSWER = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n"
    b"Connection: close\r\n\r\nBad Request"
)
GARBAGE = bytes(range(0, 256, 7)) * 4  # starts with 0x00: no TLS record begins that way
#: A plausible handshake record whose body is junk: OpenSSL rejects it as a malformed message.
MALFORMED_RECORD = b"\x16\x03\x03\x00\x08" + b"\x02\x00\x00\x04\xff\xff\xff\xff"
#: A ServerHello choosing SSL 3.0, which no client of ours offers.
SSLV3_SERVER_HELLO = bytes.fromhex(
    "160300002a" "02000026" "0300" + "11" * 32 + "00" "0035" "00"
)  # fmt: skip
#: Application data before any handshake: a server that skipped straight to talking.
EARLY_APPLICATION_DATA = b"\x17\x03\x03\x00\x05hello"
#: A record header announcing 65535 bytes, more than any TLS record may hold.
OVERSIZED_RECORD = b"\x16\x03\x03\xff\xff" + bytes(64)


def alert_record(description: int, *, level: int = 2) -> bytes:
    """A plaintext TLS alert record (fatal by default)."""
    return bytes((0x15, 0x03, 0x03, 0x00, 0x02, level, description))
