"""Webhook ``format = "slack" | "teams" | "generic"``: the body posted to a real HTTP receiver
on 127.0.0.1, markup in certificate text neutralised for each chat client."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest

from exporters.hooks.base import HookContext
from exporters.hooks.config import parse_hooks
from exporters.hooks.formats import digest_body, webhook_body
from exporters.hooks.notice import Digest, Notice
from exporters.hooks.webhook import WebhookAction, signature
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


def _notice(index: int, endpoints: int = 1) -> Notice:
    return Notice(
        hook="n",
        kind="expiring",
        severity="critical" if index % 2 else "high",
        message=f"leaf {HOSTILE} #{index}",
        names=(f"{index}.{HOSTILE}",),
        not_after="2031-05-09T00:00:00+00:00",
        sha256=f"{index:064x}",
        endpoints=tuple((f"127.0.0.{i + 1}", 443, f"<!here>{i}") for i in range(endpoints)),
    )


def _digest(count: int) -> Digest:
    notices = tuple(_notice(i, endpoints=12) for i in range(count))
    return Digest(
        hook="n",
        window_start=datetime(2031, 5, 1, tzinfo=UTC),
        window_end=datetime(2031, 5, 2, tzinfo=UTC),
        notices=notices,
        contexts=tuple({"sha256": n.sha256} for n in notices),
    )


def test_one_certificate_lists_its_endpoints_bounded_and_escaped() -> None:
    many = dataclasses.replace(
        _ctx(), endpoints=tuple((f"127.0.0.{i}", 443, "<!channel>") for i in range(1, 15))
    )
    slack = json.dumps(webhook_body(many, "slack"))
    assert "127.0.0.10:443" in slack
    assert "127.0.0.11:443" not in slack
    assert "and 4 more" in slack
    assert "<!channel>" not in slack
    teams = json.dumps(webhook_body(many, "teams"))
    assert "endpoints (14)" in teams
    assert "and 4 more" in teams


def test_digest_bodies_are_bounded_and_escaped() -> None:
    digest = _digest(30)
    slack = digest_body(digest, "slack")
    assert len(slack["blocks"]) <= 50  # Slack's limit for one message
    shown = json.dumps(slack)
    assert "<!channel>" not in shown
    assert "<!here>" not in shown
    assert "and 6 more certificates" in shown
    assert shown.count("and 2 more") == 24  # each certificate: 10 endpoints, then "and 2 more"
    assert slack["text"] == "certscan digest 2031-05-01 (UTC): 30 certificates"
    teams = json.dumps(digest_body(digest, "teams"))
    assert "[link](http" not in teams
    assert "and 6 more certificates" in teams
    generic = digest_body(digest, "generic")
    assert generic["total"] == 30
    assert len(generic["findings"]) == 30  # the machine format keeps every finding
    assert generic["window_start"] == "2031-05-01T00:00:00+00:00"
    with pytest.raises(ValueError, match="irc"):
        digest_body(digest, "irc")


@pytest.mark.parametrize("table", [{"action": "command", "command": ["true"]}, {"action": "acme"}])
def test_digest_is_only_for_notifications(table: dict[str, object]) -> None:
    with pytest.raises(UsageError, match=r"hooks\.n\.digest: "):
        parse_hooks({"n": {**table, "digest": "daily"}}, source="t.toml")


def test_digest_values() -> None:
    table = {"action": "webhook", "url": "http://127.0.0.1/"}
    assert parse_hooks({"n": table}, source="t.toml").hooks[0].digest is None
    daily = parse_hooks({"n": {**table, "digest": "daily"}}, source="t.toml")
    assert daily.hooks[0].digest == "daily"
    with pytest.raises(UsageError, match=r"^t\.toml: hooks\.n\.digest: expected one of off, daily"):
        parse_hooks({"n": {**table, "digest": "hourly"}}, source="t.toml")


async def test_a_digest_is_posted_signed(receiver: Receiver) -> None:  # noqa: F811
    action = WebhookAction(url=receiver.url, hmac_key="k" * 32, format="slack")
    result = await action.run_digest(_digest(3))
    assert result.ok, result.output_tail
    ((headers, body),) = receiver.requests
    stamp = int(headers["x-certscan-timestamp"])
    assert headers["x-certscan-signature"] == signature(b"k" * 32, stamp, body)
    assert json.loads(body)["text"] == "certscan digest 2031-05-01 (UTC): 3 certificates"
