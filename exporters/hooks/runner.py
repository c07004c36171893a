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
succeeded / rejected      nothing: done with this certificate
========================  ===================================================

Pending rows are run once approved even if their finding has gone since (a person said yes);
the facts are the ones recorded. :func:`execute` carries out a plan: rows are written before an
action starts (``running``, claimed atomically), actions run under a ``CapacityLimiter`` with
the hook's timeout as a cancel scope, and each result is recorded with the back-off of a failure:
``RETRY_BASE * 2**(attempts-1)``, capped at ``RETRY_CAP``. ``now`` is a parameter throughout, so
tests control time without sleeping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import trio

from exporters.hooks.base import ActionResult, HookContext
from exporters.hooks.config import Hook, HooksConfig
from scanner.inventory import hooks as store_hooks
from scanner.inventory.read import EndpointKey, EndpointRecord
from scanner.inventory.store import Inventory, OwnerAssignment
from scanner.models import Finding
from scanner.serialize import iso
from scanner.sweep.events import SweepEvents
from scanner.sweep.options import AfterSweep

RETRY_BASE = timedelta(minutes=5)
RETRY_CAP = timedelta(days=1)
#: A run still "running" this long after its hook's timeout was left by a runner that died.
STALE_AFTER = timedelta(minutes=10)

Step = Literal["start", "queue", "resume"]


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


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt (1, 2, ...)."""
    exponent = min(max(attempts - 1, 0), 20)
    wait: timedelta = RETRY_BASE * (2**exponent)
    return min(wait, RETRY_CAP)


def context(hook: str, finding: Finding, endpoint: EndpointRecord | None) -> HookContext:
    """The facts an action sees (pure); ``finding.sha256`` must be set."""
    assert finding.sha256 is not None
    cert = None
    if endpoint is not None:
        chains = (endpoint.chain, *endpoint.alt_chains)
        cert = next((c for chain in chains for c in chain if c.sha256 == finding.sha256), None)
    names = cert.san_dns if cert is not None else ()
    not_after = cert.not_after if cert is not None else None
    data: dict[str, Any] = {
        "hook": hook,
        "kind": finding.kind,
        "severity": finding.severity.label,
        "message": finding.message,
        "address": finding.address,
        "port": finding.port,
        "sni": finding.sni,
        "sha256": finding.sha256,
        "names": list(names),
        "not_after": iso(not_after),
    }
    return HookContext(
        hook=hook,
        kind=finding.kind,
        severity=finding.severity.label,
        message=finding.message,
        address=finding.address,
        port=finding.port,
        sni=finding.sni,
        names=tuple(names),
        not_after=not_after,
        sha256=finding.sha256,
        finding=data,
    )


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
    chosen: dict[tuple[str, str], HookContext] = {}
    for finding in findings:
        if finding.sha256 is None:
            continue
        endpoint = endpoints.get((finding.address, finding.port, finding.sni))
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
                chosen[hook.name, finding.sha256] = context(hook.name, finding, endpoint)
    by_name = {h.name: h for h in hooks}
    steps: list[Planned] = []
    for (name, sha256), ctx in chosen.items():
        hook = by_name[name]
        run = runs.get((name, sha256))
        if run is None:
            step: Step = "queue" if hook.approval else "start"
            steps.append(Planned(step=step, hook=hook, ctx=ctx, run_id=None, status=None))
        elif _due(run, now, hook):
            steps.append(_resume(hook, ctx, run))
    for (name, sha256), run in runs.items():  # approved runs whose finding has gone
        gone = by_name.get(name)
        if gone is not None and (name, sha256) not in chosen and run.status == store_hooks.APPROVED:
            steps.append(_resume(gone, _recorded(gone, run), run))
    return steps


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
            outcome = await _one(inventory, item, now)
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
    return await execute(inventory, steps, concurrency=config.concurrency, now=now)


def after_sweep(config: HooksConfig) -> AfterSweep:
    """The sweep's after-step that runs ``config``'s hooks on the open findings (``sweep
    --run-hooks``, and ``serve`` after each job): one summary note; returns the failures."""

    async def run(inventory: Inventory, events: SweepEvents) -> int:
        outcomes = await run_hooks(inventory, config, now=datetime.now(UTC))
        queued = sum(o.planned.step == "queue" for o in outcomes)
        done = [o.result for o in outcomes if o.result is not None]
        failed = sum(not r.ok for r in done)
        events.note(
            f"hooks: {len(done) - failed} succeeded, {failed} failed, {queued} queued for "
            "approval (certscan hooks history)"
        )
        return failed

    return run


async def _one(inventory: Inventory, item: Planned, now: datetime) -> Outcome:
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
            )

        run_id = await trio.to_thread.run_sync(create)
        if item.step == "queue":
            return Outcome(planned=item, run_id=run_id, result=None)
    began = trio.current_time()
    result = await _act(item)
    finished_at = now + timedelta(seconds=trio.current_time() - began)
    record = await trio.to_thread.run_sync(store_hooks.get, engine, run_id)
    attempts = record.attempts if record is not None else 1

    def finish() -> None:
        store_hooks.finish(
            engine,
            run_id,
            ok=result.ok,
            exit_status=result.exit_status,
            output_tail=result.output_tail,
            new_sha256=result.new_sha256,
            now=finished_at,
            next_attempt_at=None if result.ok else finished_at + backoff(attempts),
        )

    await trio.to_thread.run_sync(finish)
    return Outcome(planned=item, run_id=run_id, result=result)


async def _act(item: Planned) -> ActionResult:
    with trio.move_on_after(item.hook.timeout) as scope:
        return await item.hook.action.run(item.ctx)
    assert scope.cancelled_caught
    return ActionResult(
        ok=False, exit_status=None, output_tail=f"timed out after {item.hook.timeout:g} s"
    )
