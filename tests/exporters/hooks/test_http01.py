"""The http-01 responder answers on the request line, so slow clients cannot starve the CA."""

from __future__ import annotations

import trio

from exporters.hooks.http01 import request_path, serve_http01


def test_request_path() -> None:
    assert request_path(b"GET /a HTTP/1.1\r") == "/a"
    assert request_path(b"POST /a HTTP/1.1") is None
    assert request_path(b"GET /a") is None
    assert request_path(b"GET /\xff HTTP/1.0") is None


async def test_answers_on_the_request_line_while_32_clients_drip() -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_http01, "127.0.0.1", 0, {"tok": "tok.thumb"})
        slow: list[trio.SocketStream] = []
        for _ in range(32):  # connected, one byte sent, then silence
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(b"G")
            slow.append(stream)
        with trio.fail_after(2):  # well inside the slow clients' own deadline
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            # the request line only: no headers ever follow
            await stream.send_all(b"GET /.well-known/acme-challenge/tok HTTP/1.1\r\n")
            answer = b""
            while chunk := await stream.receive_some(4096):
                answer += chunk
        await stream.aclose()
        for s in slow:
            await s.aclose()
        nursery.cancel_scope.cancel()
    assert answer.startswith(b"HTTP/1.0 200 ")
    assert answer.endswith(b"\r\n\r\ntok.thumb")
