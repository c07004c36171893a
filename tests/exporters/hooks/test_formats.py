"""Webhook ``format = "slack" | "teams" | "generic"``: the body posted to a real HTTP receiver
on 127.0.0.1, markup in certificate text neutralised for each chat client."""

from __future__ import annotations

import dataclasses
import json

import pytest

from exporters.hooks.base import HookContext
from exporters.hooks.config import parse_hooks
from exporters.hooks.formats import webhook_body
from scanner.errors import UsageError
from tests.exporters.hooks.test_webhook import Receiver, ctx, receiver  # noqa: F401

HOSTILE = "<!channel> *x* [link](http://evil.example) \u202e"


def _ctx() -> HookContext:
    return dataclasses.replace(ctx(), message=f"leaf {HOSTILE}", names=(HOSTILE,))


async def _post(receiver: Receiver, fmt: str) -> dict[str, object]:  # noqa: F811
    hook = parse_hooks(
        {"n": {"action": "webhook", "url": receiver.url, "format": fmt}}, source="t.toml"
    ).hooks[0]
    result = await hook.action.run(_ctx())
    assert result.ok, result.output_tail
    (_, body), *_ = receiver.requests[-1:]
    data: dict[str, object] = json.loads(body)
    return data


async def test_slack(receiver: Receiver) -> None:  # noqa: F811
    data = await _post(receiver, "slack")
    text = json.dumps(data)
    assert "<!channel>" not in text
    assert "&lt;!channel&gt;" in text
    assert "\u202e" not in json.loads(text)["text"]
    assert data["text"].startswith("certscan: high expiring: leaf ")  # type: ignore[union-attr]
    assert [b["type"] for b in data["blocks"]] == ["header", "section", "section"]  # type: ignore[union-attr,index]


async def test_teams(receiver: Receiver) -> None:  # noqa: F811
    data = await _post(receiver, "teams")
    (attachment,) = data["attachments"]  # type: ignore[misc]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    shown = json.dumps(card)
    assert "[link](http" not in shown
    assert "\\\\[link\\\\]" in shown


async def test_generic_is_the_finding(receiver: Receiver) -> None:  # noqa: F811
    assert await _post(receiver, "generic") == dict(_ctx().finding)


def test_unknown_format_names_the_key() -> None:
    with pytest.raises(UsageError, match=r"hooks\.n\.format: "):
        parse_hooks(
            {"n": {"action": "webhook", "url": "http://127.0.0.1/", "format": "irc"}},
            source="t.toml",
        )
    assert webhook_body(_ctx(), "generic") == dict(_ctx().finding)
