"""The action interface every renewal hook plugs into, and the data an action sees and returns.

An action is an object with a ``kind`` (the ``action = ...`` value in the config) and one
coroutine, ``run(ctx)``. It gets a :class:`HookContext` (the facts about one finding on one
certificate, already validated) and returns an :class:`ActionResult`. Expected failures (a command
exiting non-zero, a webhook answering 500, a timeout) are results with ``ok=False``, not
exceptions; the runner records them and retries later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol

#: How much of an action's output is kept (the end of it), in characters.
OUTPUT_TAIL_CHARS = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class HookContext:
    """One finding on one certificate, as a hook action sees it."""

    hook: str  # the hook's name (``[hooks.NAME]``)
    kind: str  # the finding kind, e.g. "expiring"
    severity: str  # the severity label, e.g. "high"
    message: str  # one line for a person; may hold certificate text (attacker-controlled)
    address: str
    port: int
    sni: str | None  # None when no SNI was sent
    names: tuple[str, ...]  # the leaf's DNS subject alternative names; () when unknown
    not_after: datetime | None  # UTC; None when unknown
    sha256: str  # hex fingerprint of the certificate concerned
    finding: Mapping[str, Any]  # the finding as a JSON-able dict (what stdin / the POST body get)
    #: Every endpoint whose latest chain presents this certificate with its key proven, as
    #: (address, port, sni); () when unknown (a run resumed from the record alone).
    endpoints: tuple[tuple[str, int, str | None], ...] = ()
    #: The RFC 9773 certificate id of the certificate being replaced (``replaces`` in a new
    #: ACME order); None when it has no authority key identifier or is unknown.
    replaces: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionResult:
    """What one run of an action did."""

    ok: bool
    exit_status: int | None  # a command's exit status or an HTTP status; None when none
    output_tail: str  # the last OUTPUT_TAIL_CHARS of the output (or the error), never a secret
    new_sha256: str | None = None  # the renewed certificate's fingerprint; None if not renewed
    #: When a failed run may be tried again, when the action knows better than the back-off
    #: (the CA's renewal window opens later); None: the runner's back-off.
    retry_at: datetime | None = None


class Action(Protocol):
    """A hook action: ``kind`` names it in the config; ``run`` acts on one finding."""

    kind: ClassVar[str]

    async def run(self, ctx: HookContext) -> ActionResult: ...


def clean(text: str) -> str:
    """``text`` fit for every database and terminal: NUL, other control characters (but
    newline and tab) and lone surrogates replaced by U+FFFD (pure)."""
    out = "".join(
        "\ufffd"
        if (ord(c) < 32 and c not in "\n\t") or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF
        else c
        for c in text
    )
    return out


def one_line(text: str, limit: int = 300) -> str:
    """``text`` cleaned, its whitespace runs (newlines included) folded to one space, cut to
    ``limit`` characters (pure): a reason fit for one line of history."""
    folded = " ".join(clean(text).split())
    return folded if len(folded) <= limit else folded[: limit - 3] + "..."


def tail(text: str, limit: int = OUTPUT_TAIL_CHARS) -> str:
    """The last ``limit`` characters of ``text``."""
    return text[-limit:] if len(text) > limit else text


def tail_bytes(data: bytes, limit: int = OUTPUT_TAIL_CHARS) -> str:
    """The last ``limit`` characters of ``data`` decoded leniently (invalid UTF-8 replaced)."""
    return tail(data[-limit * 4 :].decode("utf-8", "replace"), limit)
