"""TCP connect that keeps the kernel's reason for failing, and the few socket calls the TLS
driver needs, all on plain non-blocking sockets driven by trio's I/O waits.

``trio.open_tcp_stream`` folds every connect failure into one ``OSError`` after trying every
address; a scanner needs the opposite: one address, one attempt, and the errno intact, so that
``ECONNREFUSED`` (refused), ``ENETUNREACH``/``EHOSTUNREACH`` (unreachable) and a cancel scope
running out (timeout) stay apart. The classification itself is in ``scanner.engine.tls``.

Why not ``trio.socket``: a sweep opens tens of thousands of short connections, and trio's
socket wrapper adds a scheduler round trip to every call, even one that completes at once
(its guarantee that each call is a checkpoint). Here a call that can complete does, and the
task only yields when the kernel says it must wait (``wait_readable``/``wait_writable``). The
engine's channels checkpoint on every target, so no loop can hog the scheduler. The socket is
only ever touched by the task that made it, so closing it needs no ``notify_closing``.

Only IP literals are accepted: a hostname here would mean a DNS lookup inside the engine, which
the target planner has already done.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
from collections.abc import Callable
from typing import Final

import trio


def address_family(address: str) -> socket.AddressFamily:
    """``AF_INET`` or ``AF_INET6`` for an IP literal; ``ValueError`` for anything else."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        socket.inet_pton(family, address)
    except OSError:
        raise ValueError(f"not an IP address literal: {address!r}") from None
    return family


#: A new connection's socket, non-blocking from the start (no separate ``setblocking`` call).
_STREAM_NONBLOCK: Final = socket.SOCK_STREAM | getattr(socket, "SOCK_NONBLOCK", 0)
_UNDER_WAY: Final = (errno.EINPROGRESS, errno.EINTR)
_strerror: Final = functools.lru_cache(maxsize=256)(os.strerror)


def start_connect(address: str, port: int) -> tuple[socket.socket, bool]:
    """Begin a TCP connect to ``address:port`` without waiting.

    Returns the socket and whether the connect is still under way (finish it with
    :func:`finish_connect`); the caller closes the socket. A connect that failed at once (a
    nearby host refusing, a route missing) raises ``OSError`` with the kernel's errno, the
    socket already closed. Loopback and LAN hosts have often answered by the time
    ``connect()`` returns: two cheap syscalls then spare a trip through the event loop.

    A refused target costs four system calls (socket, connect, getsockopt, close):
    ``TCP_NODELAY`` is only set on a connection that succeeded or is under way.
    """
    sock = socket.socket(address_family(address), _STREAM_NONBLOCK)
    try:
        if not _STREAM_NONBLOCK & ~socket.SOCK_STREAM:
            sock.setblocking(False)
        code = sock.connect_ex((address, port))
        if code in _UNDER_WAY:  # under way; EINTR: a signal came first
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if not code:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock, not _connected(sock)
        if code:
            raise OSError(code, _strerror(code))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        sock.close()
        raise
    return sock, False


async def finish_connect(sock: socket.socket, on_wait: Callable[[int], None] | None = None) -> None:
    """Wait for a connect begun by :func:`start_connect`; ``OSError`` with the errno when it
    fails. ``on_wait(+1)`` is called as the wait begins and ``on_wait(-1)`` when it ends."""
    if on_wait is not None:
        on_wait(+1)
    try:
        await trio.lowlevel.wait_writable(sock)
    finally:
        if on_wait is not None:
            on_wait(-1)
    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        raise OSError(code, _strerror(code))


async def connect(
    address: str, port: int, on_wait: Callable[[int], None] | None = None
) -> socket.socket:
    """A connected non-blocking TCP socket to ``address:port``; the caller closes it.

    Raises ``OSError`` with the kernel's errno when the connect fails. On any failure or
    cancellation the socket is closed before the exception leaves.
    """
    sock, waiting = start_connect(address, port)
    if waiting:
        try:
            await finish_connect(sock, on_wait)
        except BaseException:
            sock.close()
            raise
    return sock


def _connected(sock: socket.socket) -> bool:
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


async def receive(sock: socket.socket, size: int) -> bytes:
    """Up to ``size`` bytes, waiting until some arrive; ``b""`` at end of stream."""
    while True:
        try:
            return sock.recv(size)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(sock)


async def send_all(sock: socket.socket, data: bytes) -> None:
    """All of ``data``, waiting whenever the send buffer is full."""
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)
        else:
            view = view[sent:]
