"""The http-01 responder of the ``acme`` hook: ``GET /.well-known/acme-challenge/TOKEN``.

Theory of operation. It runs only while an order does, on the hook's ``listen`` address. Each
connection is answered as soon as its *request line* is complete (the headers are not waited
for: nothing in them matters), so a client that sends its headers slowly or never finishes them
holds nothing but its own socket, for at most :data:`REQUEST_LINE_SECONDS`. Up to
:data:`MAX_CLIENTS` connections are handled at once; a flood beyond that is closed unanswered,
which leaves the CA's validation requests (each a fresh connection) room among slow clients.
After answering, the responder half-closes and drains what the client still sends (bounded), so
closing does not reset the connection before the client has read the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import trio

__all__ = ["MAX_CLIENTS", "REQUEST_LINE_SECONDS", "request_path", "serve_http01"]

MAX_CLIENTS: Final = 512
REQUEST_LINE_SECONDS: Final = 3.0
_MAX_LINE: Final = 4096
_PREFIX: Final = "/.well-known/acme-challenge/"


def request_path(line: bytes) -> str | None:
    """The path of a ``GET PATH HTTP/1.x`` request line, or None for anything else (pure)."""
    parts = line.rstrip(b"\r").split(b" ")
    if len(parts) != 3 or parts[0] != b"GET" or not parts[2].startswith(b"HTTP/1."):
        return None
    try:
        return parts[1].decode("ascii")
    except UnicodeDecodeError:
        return None


async def _request_line(stream: trio.SocketStream) -> bytes:
    received = b""
    with trio.move_on_after(REQUEST_LINE_SECONDS):
        while b"\n" not in received and len(received) < _MAX_LINE:
            chunk = await stream.receive_some(_MAX_LINE)
            if not chunk:
                break
            received += chunk
    return received.split(b"\n", 1)[0] if b"\n" in received else b""


async def _answer(stream: trio.SocketStream, tokens: Mapping[str, str]) -> None:
    line = await _request_line(stream)
    if not line:
        return
    path = request_path(line) or ""
    body = tokens.get(path[len(_PREFIX) :]) if path.startswith(_PREFIX) else None
    status = b"200 OK" if body is not None else b"404 Not Found"
    payload = (body or "not found").encode()
    head = (
        b"HTTP/1.0 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n"
    )
    with trio.move_on_after(5):
        await stream.send_all(head % (status, len(payload)) + payload)
        await stream.send_eof()
        drained = 0
        while drained < 65536 and (chunk := await stream.receive_some(4096)):
            drained += len(chunk)


async def serve_http01(
    address: str,
    port: int,
    tokens: Mapping[str, str],
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer http-01 requests from ``tokens`` (token → key authorization) until cancelled."""
    listeners = await trio.open_tcp_listeners(port, host=address)
    task_status.started(listeners[0].socket.getsockname()[1])
    busy = trio.Semaphore(MAX_CLIENTS)

    async def handle(stream: trio.SocketStream) -> None:
        try:
            if busy.value == 0:
                return  # a flood: the extra connections are closed unanswered
            async with busy:
                await _answer(stream, tokens)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    await trio.serve_listeners(handle, listeners)
