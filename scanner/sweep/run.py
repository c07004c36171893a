"""The sweep use case: plan, open the inventory, sweep (in this process or in forked workers),
then judge what the sweep observed (findings lifecycle, ``--report``, ``--fail-on``) and run the
caller's after-step (``--run-hooks``).

One verb for every caller: ``certscan sweep`` and ``demo`` (the CLI), ``serve`` jobs and the
planning half of ``dispatch``. It reports through :class:`~scanner.sweep.events.SweepEvents`
and writes only data to ``out`` (``--json`` lines, ``--dry-run`` targets, ``--report -``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

import trio

from scanner.errors import StoreError, TargetError
from scanner.models import CertInfo, EngineLimits, Handshake, Outcome, ScanFailure
from scanner.plan import resolve, targets
from scanner.plan.shards import Plan, shard_plan
from scanner.sweep.counters import SweepCounters
from scanner.sweep.events import SweepEvents, quiet_progress
from scanner.sweep.options import SweepOptions, SweepReport, starttls_default, sweep_spec
from scanner.text import safe

if TYPE_CHECKING:
    from scanner.inventory.store import Inventory
    from scanner.parse import CertCache
    from scanner.sweep.discover import Choice
    from scanner.sweep.pipeline import OnResult
    from scanner.sweep.pool import Pool

# The engine, the inventory, the parser and the findings engine are imported by the functions
# that use them, after the plan: `sweep --dry-run` and usage errors never load them.

__all__ = ["build_sweep_plan", "resolve_hostnames", "run", "run_command"]


async def resolve_hostnames(
    options: SweepOptions,
) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """Resolve the hostnames among ``options.specs`` (``--resolve`` all or first): their
    addresses, and the names that did not resolve with why. Used by ``sweep`` and ``dispatch``
    alike, so both plan from names resolved the same way."""
    names = targets.hostnames_in(options.specs)
    if not names:
        return {}, {}
    return await resolve.resolve_names(
        names, mode="first" if options.resolve_mode == "first" else "all"
    )


async def build_sweep_plan(options: SweepOptions) -> targets.TargetPlan:
    """The plan of ``options``: names resolved, exclusions and guards applied (lazy)."""
    resolved, failures = await resolve_hostnames(options)
    return targets.build_plan(
        options.specs,
        ports=options.ports,
        excludes=options.excludes,
        blocklist=options.blocklist,
        resolved=resolved,
        allow_public=options.allow_public,
        max_targets=options.max_targets,
        sni=options.sni,
        resolve_errors=failures,
        protocols=dict(options.protocols),
        default_protocol=starttls_default(options.starttls),
    )


def _json_writer(options: SweepOptions, out: TextIO, cache: CertCache) -> OnResult | None:
    if options.json_mode == "off":
        return None
    from scanner.serialize import json_line, outcome_to_dict

    def emit(outcome: Outcome, chain: tuple[CertInfo, ...]) -> None:
        if options.json_mode == "open":
            match outcome:
                case ScanFailure(connected=False):
                    return
                case Handshake() | ScanFailure():
                    pass
        alts: tuple[tuple[CertInfo, ...], ...] = ()
        if isinstance(outcome, Handshake) and outcome.alt_chains:
            # The pipeline parsed them a moment ago: these are cache hits.
            alts = tuple(tuple(cache.get(der) for der in alt) for alt in outcome.alt_chains)
        out.write(json_line(outcome_to_dict(outcome, chain, alts)) + "\n")
        out.flush()

    return emit


def run_command(options: SweepOptions, *, out: TextIO, events: SweepEvents) -> SweepReport:
    """``certscan sweep``: with ``--workers``, fork the workers first (``scanner.sweep.pool``:
    safe only before trio starts), then :func:`run`. Workers left without a job exit."""
    pool = None
    if options.workers > 1 and not options.dry_run:
        from scanner.sweep.pool import start_pool

        pool = start_pool(options.workers)
    try:
        return trio.run(lambda: run(options, out=out, events=events, pool=pool))
    finally:
        if pool is not None:
            pool.close()
            for proc in pool.procs:
                proc.join(5)


async def run(
    options: SweepOptions, *, out: TextIO, events: SweepEvents, pool: Pool | None = None
) -> SweepReport:
    """Plan, store and sweep. Raises CertscanError subclasses for the user's mistakes.
    ``pool``: the workers for ``--workers`` (started by :func:`run_command`)."""
    plan = await build_sweep_plan(options)
    for note in plan.notes:
        events.note(f"note: {safe(note, 300)}")
    if options.dry_run:
        shown = shard_plan(plan, options.shard)
        out.write(f"{shown.count} targets\n")
        for target in shown.first(options.dry_run_count):
            out.write(safe(target.label(), 300) + "\n")
        return SweepReport(None, SweepCounters(total=plan.count), False)
    if plan.count == 0:
        raise TargetError("nothing to scan: every target was excluded or could not be resolved")
    from scanner.sweep.discover import choose  # loads the SYN scanner: not for a dry run

    choice = choose(options.discover.mode)  # `syn` without the privilege stops here, exit 2

    from scanner.engine import crew as engine
    from scanner.inventory.store import Inventory

    nofile = engine.raise_open_files_limit()
    concurrency = engine.effective_concurrency(options.limits.concurrency, nofile)
    limits = options.limits
    if concurrency != limits.concurrency:
        events.note(f"note: concurrency lowered to {concurrency} (open-files limit {nofile})")
        limits = dataclasses.replace(limits, concurrency=concurrency)

    inventory = await trio.to_thread.run_sync(Inventory, options.db_url)
    try:
        if options.workers > 1:
            from scanner.sweep.parallel import sweep_with_workers

            report = await sweep_with_workers(
                inventory, plan, limits, options, out=out, events=events, pool=pool, choice=choice
            )
        else:
            report = await _sweep_into(
                inventory,
                shard_plan(plan, options.shard),
                limits,
                options,
                out=out,
                events=events,
                choice=choice,
            )
        # Findings first, then the status: a scan marked finished has its findings recorded,
        # and one whose findings could not be stored is failed (and resumable), not finished.
        status = "interrupted" if report.interrupted else "finished"
        try:
            await _judge(inventory, report, options, out=out, events=events)
        except StoreError:
            status = "failed"
            raise
        finally:
            await _close_scan(inventory, report.scan_id, status)
        if options.after is not None and not report.interrupted:
            await options.after(inventory, events)
        return report
    finally:
        await trio.to_thread.run_sync(inventory.close)


async def _judge(
    inventory: Inventory,
    report: SweepReport,
    options: SweepOptions,
    *,
    out: TextIO,
    events: SweepEvents,
) -> None:
    """Record the findings of what the sweep observed; write --report; decide --fail-on.

    An interrupted sweep's findings are recorded too (for the endpoints it did observe), but
    no report is written: a partial report would read as a clean bill for what was not swept.
    """
    scan_id = report.scan_id
    if scan_id is None:
        return
    from reports import assess  # the findings engine
    from reports.output import build_report

    criteria = options.criteria
    if criteria is None:
        criteria = assess.load_criteria(None, env=os.environ)
    now = datetime.now(UTC)
    # The views are kept only for a report (or a caller that shows them): memory stays flat.
    keep = options.keep_views or options.report is not None
    judged = await trio.to_thread.run_sync(
        lambda: assess.record_scan(inventory, scan_id, criteria=criteria, now=now, keep_views=keep)
    )
    report.views, report.changes, report.tally = judged.views, judged.changes, judged.tally
    worst, threshold = judged.tally.worst, options.fail_on
    report.failing = threshold is not None and worst is not None and worst >= threshold
    if options.summary:
        c = judged.changes
        events.note(
            f"findings: {judged.tally.line()} "
            f"(lifecycle: {c.new} new, {c.still_open} still open, {c.resolved} resolved)"
        )
    target = options.report
    if target is None:
        return
    if report.interrupted:
        events.note("note: the sweep was interrupted; no report written")
        return
    from reports.destination import write_report  # the renderers

    info = await trio.to_thread.run_sync(lambda: assess.scan_info(inventory, scan_id))
    document = build_report(judged.views, generated_at=now, scan=info)
    size = await trio.to_thread.run_sync(lambda: write_report(document, target, stdout=out))
    if not target.to_stdout:
        events.note(f"report: {safe(target.path, 200)} ({size:,} bytes)")


async def _sweep_into(
    inventory: Inventory,
    plan: Plan,
    limits: EngineLimits,
    options: SweepOptions,
    *,
    out: TextIO,
    events: SweepEvents,
    choice: Choice | None = None,
) -> SweepReport:
    from scanner.engine.syn.scan import SynStats
    from scanner.sweep.discover import CONNECT, summary, syn_settings
    from scanner.sweep.pipeline import (
        SweepJob,
        inventory_sink,
        run_sweep,
        sweep_cache,
        until_signalled,
    )
    from scanner.sweep.resumable import check_resumable, digest_of

    spec = sweep_spec(options)
    digest = digest_of(plan)
    start, done = 0, frozenset[tuple[str, int, str | None]]()
    previous = inventory.find_resumable(spec) if options.resume else None
    if previous is not None:
        scan_id = previous.id
        await trio.to_thread.run_sync(lambda: check_resumable(inventory, scan_id, digest))
        watermark, done_set = await trio.to_thread.run_sync(inventory.resume_scan, scan_id)
        start, done = watermark, frozenset(done_set)
        events.note(f"resuming scan {scan_id} at target {start} of {plan.count}")
    else:
        if options.resume:
            events.note("note: no interrupted sweep with these options; starting a new one")

        def start_scan() -> int:
            new = inventory.start_scan(spec=spec, total=plan.count)
            inventory.save_plan(new, digest)
            return new

        scan_id = await trio.to_thread.run_sync(start_scan)
    counters = SweepCounters(total=plan.count)
    counters.done = start
    choice = choice or CONNECT
    syn = syn_settings(options.discover, limits) if choice.mode == "syn" else None
    syn_stats = SynStats() if syn is not None else None
    counters.discovery = summary(choice, None)
    job = SweepJob(
        syn=syn,
        syn_stats=syn_stats,
        plan=plan,
        limits=limits,
        scan_id=scan_id,
        start_index=start,
        already_done=done,
        discovery=options.discovery,
    )
    cache = sweep_cache()
    emit = _json_writer(options, out, cache)
    with events.live(counters) if options.progress else quiet_progress() as tick:
        try:
            interrupted = await until_signalled(
                lambda: run_sweep(
                    job,
                    inventory_sink(inventory, scan_id),
                    counters,
                    on_result=emit,
                    on_tick=tick,
                    cache=cache,
                )
            )
        except Exception:  # the writer failed (a StoreError, perhaps in a group): not running
            await _close_scan(inventory, scan_id, "failed")
            raise
    if options.summary:
        events.finished(counters, scan_id=scan_id, db_label=options.db_label)
        events.note(f"discovery: {summary(choice, syn_stats)}")
    if interrupted:
        events.note(
            f"interrupted: {counters.done}/{counters.total} targets stored in scan {scan_id}; "
            "run the same command with --resume to continue"
        )
    return SweepReport(scan_id, counters, interrupted)


async def _close_scan(inventory: Inventory, scan_id: int | None, status: str) -> None:
    """Set the scan's final status, shielded; a store that fails here too is left as it is
    (the error that brought us here is the one reported)."""
    if scan_id is None:
        return
    with trio.CancelScope(shield=True), contextlib.suppress(StoreError):
        await trio.to_thread.run_sync(lambda: inventory.finish_scan(scan_id, status))
