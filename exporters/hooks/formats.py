"""The bodies a webhook posts, by ``format``: ``generic`` (the finding as certscan's JSON),
``slack`` (an incoming-webhook message: ``text`` plus Block Kit ``blocks``) and ``teams`` (a
Microsoft Teams / Power Automate workflow message holding one Adaptive Card).

Chat clients render markup: Slack's mrkdwn reads ``<url|text>``, ``*bold*`` and ``@channel``;
a card reads Markdown. So every certificate-derived text is made one printable line with
:func:`scanner.text.safe` and its markup characters are escaped for the target (``&<>`` for
Slack, Markdown punctuation for Teams) before it is placed. Pure.
"""

from __future__ import annotations

import json
import re
from typing import Any

from exporters.hooks.base import HookContext
from scanner.text import safe

__all__ = ["FORMATS", "webhook_body"]

FORMATS: tuple[str, ...] = ("generic", "slack", "teams")
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~<@])")


def _slack(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _markdown(text: str) -> str:
    return _MARKDOWN.sub(r"\\\1", text)


def _facts(ctx: HookContext) -> list[tuple[str, str]]:
    where = f"{ctx.address}:{ctx.port}" + (f" (SNI {ctx.sni})" if ctx.sni else "")
    return [
        ("endpoint", safe(where, 200)),
        ("names", safe(", ".join(ctx.names[:5]) or "-", 200)),
        ("not after", ctx.not_after.isoformat() if ctx.not_after else "unknown"),
        ("sha256", ctx.sha256),
    ]


def webhook_body(ctx: HookContext, fmt: str) -> dict[str, Any]:
    """The JSON body for ``ctx`` in format ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "generic":
        return dict(ctx.finding)
    title = f"certscan: {ctx.severity} {ctx.kind}"
    message = safe(ctx.message, 500)
    if fmt == "slack":
        lines = "\n".join(f"*{k}:* {_slack(v)}" for k, v in _facts(ctx))
        return {
            "text": _slack(f"{title}: {message}"),
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": _slack(message)}},
                {"type": "section", "text": {"type": "mrkdwn", "text": lines}},
            ],
        }
    if fmt == "teams":
        card = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": [
                {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "text": title},
                {"type": "TextBlock", "wrap": True, "text": _markdown(message)},
                {
                    "type": "FactSet",
                    "facts": [{"title": k, "value": _markdown(v)} for k, v in _facts(ctx)],
                },
            ],
        }
        return {
            "type": "message",
            "attachments": [
                {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
            ],
        }
    raise ValueError(f"unknown webhook format {fmt!r}")


def encoded(ctx: HookContext, fmt: str) -> bytes:
    """:func:`webhook_body` as the bytes posted (ASCII JSON)."""
    return json.dumps(webhook_body(ctx, fmt), ensure_ascii=True).encode()
