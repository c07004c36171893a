"""``--discover``: how a sweep learns which planned targets answer before it handshakes.

Theory of operation
-------------------
``connect`` discovery is the engine as it always was: every target gets a connect(), and a
silent one costs a socket and the whole ``--connect-timeout``. ``syn`` discovery runs the
stateless SYN scan of ``scanner.engine.syn`` over the same plan first: SYNs at ``--rate``
packets per second, a cookie in each sequence number, ``--syn-retries`` more SYNs to the silent,
``--syn-wait`` seconds for the last replies. :func:`sweep_after_syn` then hands on each target
as its verdict settles, in plan order:

* SYN-ACK: the target goes to the normal TLS engine (``scanner.engine.crew.sweep``, fed through
  a bounded channel of :data:`RESPONDERS`), with every option a connect sweep has (STARTTLS,
  SNI discovery, ``--all-certs``, limits, rate);
* RST: a ``refused`` outcome; no answer: ``timeout``; no route: ``unreachable`` -- sent to the
  pipeline as the engine would have sent them, so they are counted and not stored, exactly as
  with connect discovery, and the resume watermark moves over them.

Both phases run at once: the TLS engine starts on the first responders while SYNs still go out
to the rest of the plan. When the responders' channel is full the SYN scan waits, so memory is
bounded by the channel and the scan's window, never by the plan.

``auto`` (the default) picks ``syn`` when the process may open raw sockets (root or
``CAP_NET_RAW``) and ``connect`` otherwise; :func:`choose` decides once per sweep and the
summary says which ran. Exclusions, ``--blocklist``, the public-address guard and
``--max-targets`` are the plan's: nothing here sees a target the plan did not yield.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import trio

from scanner.engine import crew as engine
from scanner.engine.syn.defaults import DEFAULT_RATE
from scanner.engine.syn.scan import (
    SynSettings,
    SynStats,
    Verdict,
    syn_scan,
)
from scanner.engine.syn.sockets import RawSockets, raw_privilege
from scanner.errors import UsageError
from scanner.models import EngineLimits, FailureKind, Outcome, ScanFailure, Target
from scanner.sweep.modes import DiscoverOptions

#: Responders waiting for the TLS engine at most.
RESPONDERS: Final = 4096


def privilege_hint() -> str:
    """How to let this interpreter open raw sockets without running as root."""
    return f"sudo setcap cap_net_raw+ep {os.path.realpath(sys.executable)}"


@dataclass(frozen=True, slots=True)
class Choice:
    """The discovery a sweep runs: ``mode`` is ``syn`` or ``connect``; ``why`` says why
    ``auto`` chose it (empty when the user named the mode)."""

    mode: str
    why: str = ""


#: Connect discovery, as every sweep did before ``--discover``.
CONNECT: Final = Choice("connect")


def choose(mode: str, privileged: Callable[[], bool] = raw_privilege) -> Choice:
    """Decide ``auto``; UsageError (one line naming ``setcap``) for ``syn`` without privilege."""
    if mode == "connect":
        return CONNECT
    if privileged():
        return Choice("syn", "raw sockets available" if mode == "auto" else "")
    if mode == "syn":
        raise UsageError(
            "--discover syn needs raw sockets (root or CAP_NET_RAW): run as root or "
            f"`{privilege_hint()}`"
        )
    return Choice("connect", "no raw-socket privilege (root or CAP_NET_RAW)")


def syn_settings(
    options: DiscoverOptions, limits: EngineLimits, *, workers: int = 1
) -> SynSettings:
    """The SYN scan of a sweep: ``--rate`` (else :data:`DEFAULT_RATE`) split over ``workers``."""
    rate = limits.rate if limits.rate else DEFAULT_RATE
    return SynSettings(rate=rate / max(1, workers), retries=options.retries, wait=options.wait)


def summary(choice: Choice, stats: SynStats | None) -> str:
    """One line for the sweep summary: which discovery ran and, for SYN, what it sent."""
    why = f" ({choice.why})" if choice.why else ""
    if choice.mode != "syn" or stats is None:
        return f"{choice.mode}{why}"
    return (
        f"syn{why}: {stats.sent} SYNs sent ({stats.retried} retries, {stats.send_failures} "
        f"send failures); {stats.open} answered, {stats.refused} refused, {stats.silent} "
        f"silent; {stats.ignored} replies ignored, {stats.duplicates} duplicates"
    )


async def sweep_after_syn(
    targets: Iterable[tuple[int, Target]],
    limits: EngineLimits,
    results: trio.MemorySendChannel[tuple[int, Outcome]],
    *,
    settings: SynSettings,
    stats: SynStats,
    discover: engine.Discover | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> None:
    """SYN-scan ``targets``, then handshake with the responders (module docstring). Sends
    ``(index, outcome)`` for every target to ``results`` and closes it, as the engine does.
    ``on_phase`` is told ``"syn"`` as SYNs start and ``"tls"`` once every target settled."""
    async with results:
        # Raw sockets first: without them nothing is sent at all.
        sockets = RawSockets()
        try:
            feed_send, feed_receive = trio.open_memory_channel[tuple[int, Target]](RESPONDERS)
            detail = {
                Verdict.REFUSED: (FailureKind.REFUSED, "RST in answer to a SYN"),
                Verdict.SILENT: (
                    FailureKind.TIMEOUT,
                    f"no answer to {settings.retries + 1} SYNs within {settings.wait:g} s each",
                ),
                Verdict.UNREACHABLE: (FailureKind.UNREACHABLE, "no route to the address"),
            }

            async def settle(index: int, target: Target, verdict: Verdict) -> None:
                # Without a scheduler round per target when the channel has room: a dead /16
                # settles hundreds of thousands of targets.
                if verdict is Verdict.OPEN:
                    try:
                        feed_send.send_nowait((index, target))
                    except trio.WouldBlock:
                        await feed_send.send((index, target))
                    return
                kind, why = detail[verdict]
                failure = ScanFailure(
                    target=target, started_at=datetime.now(UTC), kind=kind, detail=why
                )
                try:
                    results.send_nowait((index, failure))
                except trio.WouldBlock:
                    await results.send((index, failure))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    lambda: engine.sweep(feed_receive, limits, results.clone(), discover=discover)
                )
                async with feed_send:
                    if on_phase is not None:
                        on_phase("syn")
                    await syn_scan(targets, sockets, settings, settle, stats=stats)
                    if on_phase is not None:
                        on_phase("tls")
        finally:
            sockets.close()
