"""The ``webhook`` action against a small HTTP receiver of the test's own on 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
import trio

from exporters.hooks.base import HookContext
from exporters.hooks.config import parse_hooks
from exporters.hooks.webhook import WebhookAction, signature

KEY = "s3cret-key"


@dataclass
class Receiver:
    """Accepts HTTP/1.1 POSTs, keeps them, answers ``status``."""

    url: str = ""
    status: int = 204
    answer: bytes = b""
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, stream: trio.SocketStream) -> None:
        data = b""
        with trio.fail_after(5):
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
            length = int(headers.get("content-length", "0"))
            while len(body) < length:
                body += await stream.receive_some(65536)
            self.requests.append((headers, body))
            await stream.send_all(
                f"HTTP/1.1 {self.status} X\r\nContent-Length: {len(self.answer)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + self.answer
            )
        await stream.aclose()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1")
        )
        (listener,) = listeners
        host, port = listener.socket.getsockname()[:2]
        server.url = f"http://{host}:{port}/hook"
        yield server
        nursery.cancel_scope.cancel()


def ctx() -> HookContext:
    finding = {"kind": "expiring", "sha256": "cd" * 32, "message": "naïve \u202e text"}
    return HookContext(
        hook="notify",
        kind="expiring",
        severity="high",
        message=finding["message"],
        address="127.0.0.1",
        port=443,
        sni=None,
        names=(),
        not_after=datetime(2026, 12, 1, tzinfo=UTC),
        sha256="cd" * 32,
        finding=finding,
    )


async def test_the_finding_is_posted_and_signed(receiver: Receiver) -> None:
    action = parse_hooks(
        {"notify": {"action": "webhook", "url": receiver.url, "hmac_key": KEY}}, source="t.toml"
    ).hooks[0]
    assert KEY not in repr(action)
    result = await action.action.run(ctx())
    assert (result.ok, result.exit_status) == (True, 204)
    ((headers, body),) = receiver.requests
    assert json.loads(body) == dict(ctx().finding)
    assert headers["content-type"] == "application/json"
    stamp = headers["x-certscan-timestamp"]
    assert stamp.isdigit()
    assert abs(int(stamp) - time.time()) < 60
    assert len(headers["x-certscan-delivery"]) == 32
    signed = stamp.encode() + b"." + body
    expected = "sha256=" + hmac.new(KEY.encode(), signed, hashlib.sha256).hexdigest()
    assert headers["x-certscan-signature"] == expected == signature(KEY.encode(), int(stamp), body)
    # the body alone (the old scheme) or another timestamp does not verify: a replay with a
    # fresh timestamp needs the key
    assert expected != "sha256=" + hmac.new(KEY.encode(), body, hashlib.sha256).hexdigest()
    assert expected != signature(KEY.encode(), int(stamp) + 1, body)
    assert KEY not in result.output_tail


async def test_every_delivery_has_its_own_id(receiver: Receiver) -> None:
    action = WebhookAction(url=receiver.url, hmac_key=KEY)
    assert (await action.run(ctx())).ok
    assert (await action.run(ctx())).ok
    ids = {headers["x-certscan-delivery"] for headers, _ in receiver.requests}
    assert len(ids) == 2


async def test_the_key_can_come_from_the_environment(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CERTSCAN_TEST_HOOK_KEY", KEY)
    action = WebhookAction(url=receiver.url, hmac_key_env="CERTSCAN_TEST_HOOK_KEY")
    assert (await action.run(ctx())).ok
    ((headers, body),) = receiver.requests
    stamp = int(headers["x-certscan-timestamp"])
    assert headers["x-certscan-signature"] == signature(KEY.encode(), stamp, body)

    monkeypatch.delenv("CERTSCAN_TEST_HOOK_KEY")
    result = await action.run(ctx())
    assert not result.ok
    assert "CERTSCAN_TEST_HOOK_KEY" in result.output_tail
    assert len(receiver.requests) == 1  # nothing is sent unsigned


async def test_without_a_key_there_is_no_signature(receiver: Receiver) -> None:
    assert (await WebhookAction(url=receiver.url).run(ctx())).ok
    ((headers, _body),) = receiver.requests
    assert "x-certscan-signature" not in headers


async def test_an_error_answer_is_a_failure_with_a_bounded_tail(receiver: Receiver) -> None:
    receiver.status = 500
    receiver.answer = b"x" * 100_000 + b"the end"
    result = await WebhookAction(url=receiver.url).run(ctx())
    assert (result.ok, result.exit_status) == (False, 500)
    assert len(result.output_tail) <= 4096
    assert result.output_tail.endswith("the end")


async def test_a_refused_connection_is_a_failure() -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    result = await WebhookAction(url=f"http://127.0.0.1:{port}/").run(ctx())
    assert not result.ok
    assert result.exit_status is None
    assert "ConnectError" in result.output_tail
