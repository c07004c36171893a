"""Daily digests of notification hooks (``digest = "daily"`` on an ``email`` or ``webhook``
hook).

Semantics
---------
Time is UTC throughout. A digest hook selects findings exactly like an immediate one (one per
certificate, again only when its severity rises or the certificate changes), but instead of
sending, the runner keeps each in the inventory (``scanner.inventory.notify``) under the UTC
day it was selected on, the window ``[D 00:00:00, D+1 00:00:00)``. The first ``certscan sweep
--run-hooks``, ``certscan hooks run`` or ``certscan serve`` job that runs at or after the
window's end delivers the window as one message per hook (:func:`deliver`); a window with
nothing collected sends nothing. A failed delivery is retried by a later run after a back-off
(the runner's); a day whose digest could not be sent stays its own message. Delivery is claimed
in the database first, so two runners never send the same digest; it is recorded as sent right
after the server accepted it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import trio

from exporters.hooks.base import ActionResult, one_line, tail
from exporters.hooks.config import Hook
from exporters.hooks.names import printable as safe_text
from exporters.hooks.notice import Digest, notice_from
from scanner.inventory import notify as store_notify
from scanner.inventory.store import Inventory

__all__ = ["MAX_WINDOWS_PER_RUN", "Delivered", "deliver"]

log = logging.getLogger("certscan.hooks")
#: Windows delivered by one run at most (the rest wait for the next run).
MAX_WINDOWS_PER_RUN = 31


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivered:
    """One digest delivery attempt."""

    hook: str
    window_start: datetime
    certificates: int
    result: ActionResult


async def deliver(
    inventory: Inventory,
    hooks: Sequence[Hook],
    now: datetime,
    backoff: Callable[[int], timedelta],
) -> list[Delivered]:
    """Send every digest whose window has ended (module docstring); one result each."""
    by_name = {h.name: h for h in hooks if h.digest is not None}
    if not by_name:
        return []
    engine = inventory.engine
    windows = await trio.to_thread.run_sync(store_notify.due, engine, list(by_name), now)
    done: list[Delivered] = []
    for name, start in windows[:MAX_WINDOWS_PER_RUN]:
        hook = by_name[name]
        token = secrets.token_hex(16)
        entries = await trio.to_thread.run_sync(store_notify.claim, engine, name, start, token, now)
        if not entries:
            continue  # another runner took it
        digest = Digest(
            hook=name,
            window_start=start,
            window_end=start + store_notify.DAY,
            notices=tuple(notice_from(e.context) for e in entries),
            contexts=tuple(e.context for e in entries),
        )
        result = await _send(hook, digest)
        if result.ok:
            await trio.to_thread.run_sync(store_notify.sent, engine, token, now)
        else:
            attempts = max(e.attempts for e in entries)
            retry = now + backoff(attempts)
            await trio.to_thread.run_sync(
                store_notify.failed, engine, token, tail(result.output_tail, 1000), retry
            )
            log.warning(
                "hook %s: digest of %s not sent: %s",
                safe_text(name),
                start.date().isoformat(),
                safe_text(one_line(result.output_tail)),
            )
        done.append(
            Delivered(hook=name, window_start=start, certificates=len(entries), result=result)
        )
    return done


async def _send(hook: Hook, digest: Digest) -> ActionResult:
    run = getattr(hook.action, "run_digest", None)
    if run is None:  # the config refuses digest on other actions
        return ActionResult(ok=False, exit_status=None, output_tail="this action has no digest")
    with trio.move_on_after(hook.timeout):
        try:
            result: ActionResult = await run(digest)
            return result
        except Exception as exc:  # one broken delivery never stops the others
            log.warning("hook %s: digest failed", safe_text(hook.name), exc_info=True)
            return ActionResult(
                ok=False, exit_status=None, output_tail=one_line(f"{type(exc).__name__}: {exc}")
            )
    return ActionResult(
        ok=False, exit_status=None, output_tail=f"timed out after {hook.timeout:g} s"
    )
