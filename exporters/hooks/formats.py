"""The bodies a webhook posts, by ``format``: ``generic`` (the finding as certscan's JSON),
``slack`` (an incoming-webhook message: ``text`` plus Block Kit ``blocks``) and ``teams`` (a
Microsoft Teams / Power Automate workflow message holding one Adaptive Card). One message names
one certificate once and lists every endpoint presenting it (at most ``MAX_ENDPOINTS``, then
"and N more"); :func:`digest_body` is one hook's daily digest of several certificates.

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
from exporters.hooks.notice import (
    MAX_DIGEST_CERTIFICATES,
    MAX_ENDPOINTS,
    Digest,
    Notice,
    endpoint_text,
    listed,
    notice_of,
)
from scanner.text import safe

__all__ = ["FORMATS", "digest_body", "webhook_body"]

FORMATS: tuple[str, ...] = ("generic", "slack", "teams")
#: Certificates a chat digest shows: Slack takes at most 50 blocks (1 header, 2 per certificate,
#: 1 "and N more").
_CHAT_DIGEST = min(MAX_DIGEST_CERTIFICATES, 24)
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~<@])")


def _slack(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _markdown(text: str) -> str:
    return _MARKDOWN.sub(r"\\\1", text)


def _facts(notice: Notice) -> list[tuple[str, str]]:
    shown, more = listed([endpoint_text(e) for e in notice.endpoints], MAX_ENDPOINTS)
    where = ", ".join(shown) + (f" and {more} more" if more else "")
    count = len(notice.endpoints)
    return [
        ("names", safe(", ".join(notice.names[:5]) or "-", 200)),
        ("not after", safe(notice.not_after or "unknown")),
        ("sha256", safe(notice.sha256)),
        (f"endpoints ({count})" if count > 1 else "endpoint", safe(where, 1500)),
    ]


def _title(notice: Notice) -> str:
    return safe(f"certscan: {notice.severity} {notice.kind}", 140)


def _slack_section(notice: Notice, prefix: str = "") -> list[dict[str, Any]]:
    lines = "\n".join(f"*{k}:* {_slack(v)}" for k, v in _facts(notice))
    message = _slack(safe(notice.message, 500))
    head = f"*{_slack(prefix + notice.severity.upper())} {_slack(safe(notice.kind))}:* "
    return [{"type": "section", "text": {"type": "mrkdwn", "text": (head + message)[:2900]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": lines[:2900]}}]  # fmt: skip


def _teams_items(notice: Notice, prefix: str = "") -> list[dict[str, Any]]:
    return [
        {
            "type": "TextBlock",
            "wrap": True,
            "weight": "Bolder",
            "text": _markdown(f"{prefix}{notice.severity.upper()} {safe(notice.kind)}"),
        },
        {"type": "TextBlock", "wrap": True, "text": _markdown(safe(notice.message, 500))},
        {
            "type": "FactSet",
            "facts": [{"title": k, "value": _markdown(v)} for k, v in _facts(notice)],
        },
    ]


def _card(body: list[dict[str, Any]]) -> dict[str, Any]:
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }


def webhook_body(ctx: HookContext, fmt: str) -> dict[str, Any]:
    """The JSON body for ``ctx`` in format ``fmt`` (one of :data:`FORMATS`): one certificate,
    every endpoint presenting it (``generic``: all of them, in ``endpoints``)."""
    if fmt == "generic":
        return dict(ctx.finding)
    notice = notice_of(ctx)
    title = _title(notice)
    message = safe(notice.message, 500)
    if fmt == "slack":
        lines = "\n".join(f"*{k}:* {_slack(v)}" for k, v in _facts(notice))
        return {
            "text": _slack(f"{title}: {message}"),
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": _slack(message)}},
                {"type": "section", "text": {"type": "mrkdwn", "text": lines[:2900]}},
            ],
        }
    if fmt == "teams":
        return _card(
            [
                {
                    "type": "TextBlock",
                    "size": "Medium",
                    "weight": "Bolder",
                    "text": _markdown(title),
                },
                {"type": "TextBlock", "wrap": True, "text": _markdown(message)},
                {
                    "type": "FactSet",
                    "facts": [{"title": k, "value": _markdown(v)} for k, v in _facts(notice)],
                },
            ]
        )
    raise ValueError(f"unknown webhook format {fmt!r}")


def digest_body(digest: Digest, fmt: str) -> dict[str, Any]:
    """The JSON body of one daily digest in format ``fmt``. ``generic``: ``{"digest": "daily",
    "hook", "window_start", "window_end", "total", "findings": [...]}`` with every collected
    finding as certscan's JSON (``digest.contexts``); the chat formats show at most
    ``MAX_DIGEST_CERTIFICATES`` certificates (Slack allows 50 blocks), then "and N more"."""
    total = len(digest.notices)
    day = digest.window_start.strftime("%Y-%m-%d")
    if fmt == "generic":
        return {
            "digest": "daily",
            "hook": digest.hook,
            "window_start": digest.window_start.isoformat(),
            "window_end": digest.window_end.isoformat(),
            "total": total,
            "findings": [dict(c) for c in digest.contexts],
        }
    title = f"certscan digest {day} (UTC): {total} certificate{'s' if total != 1 else ''}"
    shown = digest.notices[:_CHAT_DIGEST]
    more = total - len(shown)
    tail_text = f"... and {more} more certificates (certscan findings lists them all)"
    if fmt == "slack":
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}}
        ]
        for index, notice in enumerate(shown, 1):
            blocks += _slack_section(notice, f"{index}. ")
        if more:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": tail_text}})
        return {"text": title, "blocks": blocks}
    if fmt == "teams":
        body: list[dict[str, Any]] = [
            {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "text": _markdown(title)}
        ]
        for index, notice in enumerate(shown, 1):
            body += _teams_items(notice, f"{index}. ")
        if more:
            body.append({"type": "TextBlock", "wrap": True, "text": _markdown(tail_text)})
        return _card(body)
    raise ValueError(f"unknown webhook format {fmt!r}")


def encoded(ctx: HookContext, fmt: str) -> bytes:
    """:func:`webhook_body` as the bytes posted (ASCII JSON)."""
    return json.dumps(webhook_body(ctx, fmt), ensure_ascii=True).encode()


def encoded_digest(digest: Digest, fmt: str) -> bytes:
    """:func:`digest_body` as the bytes posted (ASCII JSON)."""
    return json.dumps(digest_body(digest, fmt), ensure_ascii=True).encode()
