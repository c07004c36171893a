"""Evaluate the inventory's open findings against the hooks, and act.

Theory of operation
-------------------
:func:`plan` is pure. It joins each open finding that names a certificate with its endpoint's
facts (SANs, not_after), keeps the findings each hook selects -- one per (hook, sha256), the most
severe, because the findings come most severe first -- and compares them with the newest
``hook_run`` row of that pair:

========================  ===================================================
newest row                step
========================  ===================================================
none                      ``queue`` (hook needs approval) or ``start``
pending                   nothing (waiting for a person)
running                   nothing; ``resume`` once STALE_AFTER past the hook's
                          timeout (the runner that claimed it died)
approved                  ``resume`` it
failed, back-off passed   ``resume`` it (a retry)
failed, back-off not yet  nothing
succeeded / rejected      nothing: done with this certificate -- except for a
                          notification (``email``, ``webhook``) whose finding
                          now has a higher severity than the run recorded:
                          ``start`` (or ``queue``) a new run, so a person hears
                          of the change and never of the same finding twice
========================  ===================================================

A notification names the certificate once with every endpoint presenting it (the plan keeps one
finding per (hook, sha256)); a new certificate is a new sha256, so it is notified on its own.
A hook with ``digest = "daily"`` records its runs the same way, but the action is to keep the
finding for the day's digest (``exporters.hooks.digest``), delivered by :func:`after_hooks`
once the UTC day is over.

Pending rows are run once approved even if their finding has gone since (a person said yes);
the facts are the ones recorded. :func:`execute` carries out a plan: rows are written before an
action starts (``running``, claimed atomically), actions run under a ``CapacityLimiter`` with
the hook's timeout as a cancel scope, and each result is recorded with the back-off of a failure:
``RETRY_BASE * 2**(attempts-1)``, capped at ``RETRY_CAP``. ``now`` is a parameter throughout, so
tests control time without sleeping.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

import trio

from exporters.hooks.ari_scan import scan_windows
from exporters.hooks.base import ActionResult, HookContext, clean, one_line, tail
from exporters.hooks.config import NOTIFYING, Hook, HooksConfig
from exporters.hooks.digest import Delivered, deliver
from exporters.hooks.facts import context, presenting, proven
from exporters.hooks.names import printable as safe_text
from exporters.hooks.verify import Verified, after_renewal, verify_changes, verify_open
from scanner.inventory import hooks as store_hooks
from scanner.inventory import notify as store_notify
from scanner.inventory.read import EndpointKey, EndpointRecord
from scanner.inventory.store import Inventory, OwnerAssignment
from scanner.models import Finding, Severity
from scanner.sweep.events import SweepEvents
from scanner.sweep.options import AfterSweep

log = logging.getLogger("certscan.hooks")
RETRY_BASE = timedelta(minutes=5)
RETRY_CAP = timedelta(days=1)
#: A run still "running" this long after its hook's timeout was left by a runner that died.
STALE_AFTER = timedelta(minutes=10)

Step = Literal["start", "queue", "resume"]
#: The actions whose success means a renewed certificate (verified afterwards).
RENEWING = ("acme", "command")


@dataclass(frozen=True, slots=True, kw_only=True)
class Planned:
    """One thing to do: ``start`` a new run, ``queue`` one for approval, or ``resume`` the
    existing run ``run_id`` (approved, or failed and due for a retry)."""

    step: Step
    hook: Hook
    ctx: HookContext
    run_id: int | None  # the existing row for "resume"; None otherwise
    status: str | None  # that row's status for "resume"; None otherwise


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What happened to one planned item."""

    planned: Planned
    run_id: int
    result: ActionResult | None  # None when queued, or when another runner claimed it first
    verified: Verified | None = None  # the re-probe after a renewal; None when none ran


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt (1, 2, ...)."""
    exponent = min(max(attempts - 1, 0), 20)
    wait: timedelta = RETRY_BASE * (2**exponent)
    return min(wait, RETRY_CAP)


def _recorded(hook: Hook, run: store_hooks.HookRunRecord) -> HookContext:
    finding = Finding(
        kind=run.kind,
        severity=hook.selector.min_severity,
        message="",
        address=run.address,
        port=run.port,
        sni=run.sni,
        sha256=run.sha256,
    )
    return context(hook.name, finding, None)


def plan(
    hooks: Sequence[Hook],
    findings: Iterable[Finding],
    endpoints: Mapping[EndpointKey, EndpointRecord],
    runs: Mapping[tuple[str, str], store_hooks.HookRunRecord],
    now: datetime,
    owners: Mapping[EndpointKey, OwnerAssignment] | None = None,
) -> list[Planned]:
    """What to do now (pure; see the module docstring)."""
    where = presenting(endpoints.values())
    chosen: dict[tuple[str, str], HookContext] = {}
    for finding in findings:
        if finding.sha256 is None:
            continue
        endpoint = endpoints.get((finding.address, finding.port, finding.sni))
        if endpoint is not None and not proven(endpoint):
            continue  # a chain whose key was never shown to be held drives nothing
        names = context("", finding, endpoint).names
        owned = (owners or {}).get((finding.address, finding.port, finding.sni))
        for hook in hooks:
            if (hook.name, finding.sha256) in chosen:
                continue
            if hook.selector.matches(
                kind=finding.kind,
                severity=finding.severity,
                address=finding.address,
                port=finding.port,
                sni=finding.sni,
                names=names,
                owner=None if owned is None else owned.owner,
                tags=() if owned is None else owned.tags,
            ):
                chosen[hook.name, finding.sha256] = context(
                    hook.name, finding, endpoint, endpoints=where.get(finding.sha256, ())
                )
    by_name = {h.name: h for h in hooks}
    chosen = _one_per_file_set(chosen, by_name, runs)
    steps: list[Planned] = []
    for (name, sha256), ctx in chosen.items():
        hook = by_name[name]
        run = runs.get((name, sha256))
        if run is None or _rose(run, ctx, hook):
            step: Step = "queue" if hook.approval else "start"
            steps.append(Planned(step=step, hook=hook, ctx=ctx, run_id=None, status=None))
        elif _due(run, now, hook):
            steps.append(_resume(hook, ctx, run))
    for (name, sha256), run in runs.items():  # approved runs whose finding has gone
        gone = by_name.get(name)
        if gone is not None and (name, sha256) not in chosen and run.status == store_hooks.APPROVED:
            steps.append(_resume(gone, _recorded(gone, run), run))
    return steps


def _one_per_file_set(
    chosen: dict[tuple[str, str], HookContext],
    hooks: Mapping[str, Hook],
    runs: Mapping[tuple[str, str], store_hooks.HookRunRecord],
) -> dict[tuple[str, str], HookContext]:
    """An action that writes one fixed set of files (``one_certificate``, the acme hook) gets
    one context per hook: the certificate with a run on record first (its episode goes on),
    else the most severe, with the names of every certificate the hook selected, so a second
    certificate never overwrites the first."""
    groups: dict[str, list[tuple[str, HookContext]]] = {}
    out: dict[tuple[str, str], HookContext] = {}
    for (name, sha256), ctx in chosen.items():
        if getattr(hooks[name].action, "one_certificate", False):
            groups.setdefault(name, []).append((sha256, ctx))
        else:
            out[name, sha256] = ctx
    for name, members in groups.items():
        ordered = sorted(members, key=lambda m: (name, m[0]) not in runs)  # stable: on record first
        sha256, first = ordered[0]
        names = tuple(dict.fromkeys(n for _, ctx in ordered for n in ctx.names))
        endpoints = tuple(dict.fromkeys(e for _, ctx in ordered for e in ctx.endpoints))
        merged = dict(first.finding) | {"names": list(names)}
        out[name, sha256] = replace(first, names=names, endpoints=endpoints, finding=merged)
    return out


def _rose(run: store_hooks.HookRunRecord, ctx: HookContext, hook: Hook) -> bool:
    """Whether a notification hook's finding on this certificate is now more severe than the
    one its finished run notified (a run without a recorded severity never is)."""
    if type(hook.action).kind not in NOTIFYING or run.severity is None:
        return False
    if run.status not in (store_hooks.SUCCEEDED, store_hooks.REJECTED):
        return False
    try:
        return Severity.parse(ctx.severity) > Severity.parse(run.severity)
    except ValueError:
        return False


def _resume(hook: Hook, ctx: HookContext, run: store_hooks.HookRunRecord) -> Planned:
    return Planned(step="resume", hook=hook, ctx=ctx, run_id=run.id, status=run.status)


def _due(run: store_hooks.HookRunRecord, now: datetime, hook: Hook) -> bool:
    if run.status == store_hooks.APPROVED:
        return True
    if run.status == store_hooks.RUNNING:
        started = run.started_at
        return (
            started is not None and started + timedelta(seconds=hook.timeout) + STALE_AFTER <= now
        )
    if run.status == store_hooks.FAILED:
        return run.next_attempt_at is None or run.next_attempt_at <= now
    return False


def describe(item: Planned) -> str:
    """One line for ``--dry-run`` and logs (certificate text made safe by the caller)."""
    verb = {"start": "run", "queue": "queue for approval", "resume": "run"}[item.step]
    if item.step == "resume" and item.status == store_hooks.FAILED:
        verb = "retry"
    if item.hook.digest is not None and item.step != "queue":
        verb = "keep for the daily digest:"
    target = f"{item.ctx.address}:{item.ctx.port}"
    if item.ctx.sni:
        target += f" (sni {item.ctx.sni})"
    action = type(item.hook.action).kind
    return (
        f"{verb} hook {item.hook.name} [{action}] for {item.ctx.kind} on {target}, "
        f"certificate {item.ctx.sha256[:16]}"
    )


def evaluate(
    inventory: Inventory, config: HooksConfig, now: datetime, *, only: str | None = None
) -> list[Planned]:
    """Read the open findings, endpoint facts and hook runs, and :func:`plan` (blocking I/O)."""
    hooks = [h for h in config.hooks if only is None or h.name == only]
    findings = [record.finding for record in inventory.findings(open_only=True)]
    endpoints = {(e.address, e.port, e.sni): e for e in inventory.latest_endpoints()}
    runs = store_hooks.latest(inventory.engine, [h.name for h in hooks])
    return plan(hooks, findings, endpoints, runs, now, inventory.owners())


async def execute(
    inventory: Inventory, steps: Sequence[Planned], *, concurrency: int, now: datetime
) -> list[Outcome]:
    """Carry out ``steps``; every run is recorded. ``now`` is when the runs start (tests pass a
    chosen time; the CLI the current time); an attempt ends ``now`` plus its duration."""
    limiter = trio.CapacityLimiter(concurrency)
    outcomes: list[Outcome] = []

    async def one(item: Planned) -> None:
        async with limiter:
            outcome = await _guarded(inventory, item, now)
        if outcome is not None:
            outcomes.append(outcome)

    async with trio.open_nursery() as nursery:
        for item in steps:
            nursery.start_soon(one, item)
    return outcomes


async def run_hooks(
    inventory: Inventory, config: HooksConfig, *, now: datetime, only: str | None = None
) -> list[Outcome]:
    """Evaluate and act: the whole of ``certscan hooks run``, for callers such as a sweep or the
    ``serve`` daemon after a scheduled scan."""
    steps = await trio.to_thread.run_sync(lambda: evaluate(inventory, config, now, only=only))
    outcomes = await execute(inventory, steps, concurrency=config.concurrency, now=now)
    await after_hooks(inventory, config, outcomes, now)
    return outcomes


def after_sweep(config: HooksConfig) -> AfterSweep:
    """The sweep's after-step that runs ``config``'s hooks on the open findings (``sweep
    --run-hooks``, and ``serve`` after each job): one summary note; returns the failures."""

    async def run(inventory: Inventory, events: SweepEvents) -> int:
        now = datetime.now(UTC)
        steps = await trio.to_thread.run_sync(lambda: evaluate(inventory, config, now))
        outcomes = await execute(inventory, steps, concurrency=config.concurrency, now=now)
        digests = await after_hooks(inventory, config, outcomes, now)
        queued = sum(o.planned.step == "queue" for o in outcomes)
        done = [o.result for o in outcomes if o.result is not None]
        failed = sum(not r.ok for r in done)
        events.note(
            f"hooks: {len(done) - failed} succeeded, {failed} failed, {queued} queued for "
            "approval (certscan hooks history)"
        )
        for line in digest_lines(digests):
            events.note(line)
        return failed + sum(not d.result.ok for d in digests)

    return run


def digest_lines(digests: Sequence[Delivered]) -> list[str]:
    """One line per digest delivery, for the sweep's notes and ``certscan hooks run``."""
    lines = []
    for d in digests:
        state = (
            "sent" if d.result.ok else f"not sent, retried later: {one_line(d.result.output_tail)}"
        )
        lines.append(
            f"hook {safe_text(d.hook)}: daily digest of {d.window_start.date().isoformat()} "
            f"(UTC), {d.certificates} certificate{'s' if d.certificates != 1 else ''}: {state}"
        )
    return lines


async def after_hooks(
    inventory: Inventory, config: HooksConfig, outcomes: Sequence[Outcome], now: datetime
) -> list[Delivered]:
    """What follows the actions: the daily digests whose UTC day has ended, re-probe the
    renewals still open and those a sweep saw (``certificate_changed``), then the ARI lookups.
    Returns the digest deliveries."""
    digests: list[Delivered] = []
    try:
        digests = await deliver(inventory, config.hooks, now, backoff)
    except Exception:  # a broken digest never fails the sweep
        log.warning("delivering digests failed", exc_info=True)
    await verify_others(inventory, outcomes, now)
    try:
        await verify_changes(inventory, now)
    except Exception:
        log.warning("verifying changed certificates failed", exc_info=True)
    if config.ari is not None:
        try:
            await scan_windows(inventory, config.ari, now)
        except Exception:  # a CA's ARI trouble never fails the sweep
            log.warning("ARI lookups failed", exc_info=True)
    return digests


async def verify_others(inventory: Inventory, outcomes: Sequence[Outcome], now: datetime) -> None:
    """Re-probe the renewals still open from earlier runs (those just run were re-probed)."""
    just = {o.run_id for o in outcomes if o.verified is not None}
    try:
        await verify_open(inventory, now, skip=just)
    except Exception:
        log.warning("verifying earlier renewals failed", exc_info=True)


async def _guarded(inventory: Inventory, item: Planned, now: datetime) -> Outcome | None:
    """:func:`_one`, with any unexpected error ending the run ``failed`` (one line) instead of
    escaping into the nursery and cancelling the other actions."""
    state: dict[str, int] = {}
    try:
        return await _one(inventory, item, now, state)
    except Exception as exc:  # one broken action never stops the others
        reason = one_line(f"internal error: {type(exc).__name__}: {exc}")
        log.warning("hook %s: %s", safe_text(item.hook.name), reason, exc_info=True)
        run_id = state.get("run_id")
        if run_id is None:
            return None
        result = ActionResult(ok=False, exit_status=None, output_tail=reason)
        try:
            await trio.to_thread.run_sync(
                _finish, inventory, run_id, result, now, state.get("attempts", 1)
            )
        except Exception:
            log.exception("hook %s: cannot record run %d", safe_text(item.hook.name), run_id)
        return Outcome(planned=item, run_id=run_id, result=result)


def _finish(
    inventory: Inventory, run_id: int, result: ActionResult, at: datetime, attempts: int
) -> None:
    store_hooks.finish(
        inventory.engine,
        run_id,
        ok=result.ok,
        exit_status=result.exit_status,
        output_tail=tail(clean(result.output_tail)),
        new_sha256=result.new_sha256,
        now=at,
        next_attempt_at=None if result.ok else result.retry_at or at + backoff(attempts),
    )


async def _one(
    inventory: Inventory, item: Planned, now: datetime, state: dict[str, int]
) -> Outcome:
    engine = inventory.engine
    ctx = item.ctx
    if item.step == "resume":
        assert item.run_id is not None
        assert item.status is not None
        run_id = item.run_id
        claimed = await trio.to_thread.run_sync(store_hooks.claim, engine, run_id, item.status, now)
        if not claimed:
            return Outcome(planned=item, run_id=run_id, result=None)
    else:
        status = store_hooks.PENDING if item.step == "queue" else store_hooks.RUNNING

        def create() -> int:
            return store_hooks.create(
                engine,
                hook=item.hook.name,
                sha256=ctx.sha256,
                address=ctx.address,
                port=ctx.port,
                sni=ctx.sni,
                kind=ctx.kind,
                status=status,
                now=now,
                severity=ctx.severity,
            )

        run_id = await trio.to_thread.run_sync(create)
        if item.step == "queue":
            return Outcome(planned=item, run_id=run_id, result=None)
    state["run_id"] = run_id
    record = await trio.to_thread.run_sync(store_hooks.get, engine, run_id)
    attempts = record.attempts if record is not None else 1
    state["attempts"] = attempts
    began = trio.current_time()
    result = await (_collect(inventory, item, now) if item.hook.digest else _act(item))
    finished_at = now + timedelta(seconds=trio.current_time() - began)
    await trio.to_thread.run_sync(_finish, inventory, run_id, result, finished_at, attempts)
    verified = None
    if result.ok and item.hook.verify_within > 0 and type(item.hook.action).kind in RENEWING:
        try:
            verified = await after_renewal(
                inventory,
                run_id=run_id,
                old_sha256=ctx.sha256,
                also=ctx.endpoints,
                verify_within=item.hook.verify_within,
                now=finished_at,
            )
        except Exception:  # verification trouble never undoes a renewal
            log.warning("hook %s: verifying run %d failed", safe_text(item.hook.name), run_id)
    return Outcome(planned=item, run_id=run_id, result=result, verified=verified)


async def _collect(inventory: Inventory, item: Planned, now: datetime) -> ActionResult:
    """A digest hook's action: keep the finding for the day's digest."""
    ctx = item.ctx

    def keep() -> datetime:
        return store_notify.collect(
            inventory.engine,
            hook=item.hook.name,
            sha256=ctx.sha256,
            kind=ctx.kind,
            severity=ctx.severity,
            context=ctx.finding,
            now=now,
        )

    start = await trio.to_thread.run_sync(keep)
    end = start + store_notify.DAY
    return ActionResult(
        ok=True,
        exit_status=None,
        output_tail=(
            f"kept for the daily digest of {start.date().isoformat()} (UTC), sent by the first "
            f"run from {end.isoformat()}"
        ),
    )


async def _act(item: Planned) -> ActionResult:
    with trio.move_on_after(item.hook.timeout) as scope:
        try:
            return await item.hook.action.run(item.ctx)
        except Exception as exc:  # a bug or an unforeseen error in one action: a failed run
            log.warning("hook %s failed", safe_text(item.hook.name), exc_info=True)
            reason = one_line(f"{type(exc).__name__}: {exc}")
            return ActionResult(ok=False, exit_status=None, output_tail=reason)
    assert scope.cancelled_caught
    return ActionResult(
        ok=False, exit_status=None, output_tail=f"timed out after {item.hook.timeout:g} s"
    )
