"""The ``sweep`` command apart from option parsing: plan, open the inventory, run, summarise,
then judge what the sweep observed (findings lifecycle, ``--report``, ``--fail-on``).

Kept out of ``cli.py`` so ``demo`` runs exactly the same path as ``sweep``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import trio
from rich.console import Console

from reports import assess
from reports.model import EndpointView, Severity
from reports.output import build_report
from scanner import models
from scanner.cli.console import ProgressDisplay, SweepCounters, safe, summary_table
from scanner.cli.report import ReportOutput, findings_line, write_report
from scanner.engine import crew as engine
from scanner.engine.discovery import DiscoveryOptions
from scanner.errors import StoreError, TargetError, UsageError
from scanner.inventory.store import FindingChanges, Inventory
from scanner.models import CertInfo, EngineLimits, Handshake, Outcome, ScanFailure
from scanner.parse import CertCache
from scanner.plan import resolve, targets
from scanner.plan.shards import Plan, ShardSpec, shard_plan
from scanner.serialize import json_line, outcome_to_dict
from scanner.sweep.pipeline import (
    CACHE_ENTRIES,
    OnResult,
    SweepJob,
    inventory_sink,
    run_sweep,
    scan_spec,
    until_signalled,
)
from scanner.sweep.resumable import check_resumable, digest_of

if TYPE_CHECKING:
    from exporters.hooks.config import HooksConfig
    from scanner.sweep.pool import Pool

#: Exit code when the user interrupts a sweep (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130
#: Exit code when a finding is at or above ``--fail-on``.
EXIT_FINDINGS = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepOptions:
    """What the user asked for, already split into lists (files read, strings not yet parsed)."""

    specs: tuple[str, ...]
    ports: tuple[int, ...]
    #: ``-p 2525/smtp``: the protocol of those ports (``Target.protocol``).
    protocols: tuple[tuple[int, str], ...] = ()
    #: ``--starttls``: ``auto`` (by port), ``off`` (implicit TLS) or a protocol for every port.
    starttls: str = "auto"
    excludes: tuple[str, ...] = ()
    blocklist: tuple[str, ...] = ()
    sni: str | None = None
    #: ``--sni-from``/``--sni-file``: more names to try on each address that handshook.
    discovery: DiscoveryOptions = field(default_factory=DiscoveryOptions)
    allow_public: bool = False
    max_targets: int = 2**24
    resolve_mode: str = "all"
    limits: EngineLimits = field(default_factory=EngineLimits)
    db_url: str
    db_label: str
    resume: bool = False
    json_mode: str = "off"  # "off", "open" (endpoints that accepted a connection), "all"
    progress: bool = True
    summary: bool = True
    dry_run: bool = False
    dry_run_count: int = 20
    #: Policy and trust for the findings; None: the default config (CERTSCAN_CONFIG, XDG).
    criteria: assess.Criteria | None = None
    report: ReportOutput | None = None  # --report: written after the sweep unless interrupted
    fail_on: Severity | None = None  # --fail-on
    job: str | None = None  # the `certscan serve` job running this sweep, None for a plain sweep
    #: ``--run-hooks``: the config's hooks, run on the open findings after the sweep.
    hooks: HooksConfig | None = None
    #: ``--seed/--shards/--shard``: sweep only this shard of the seeded permutation.
    shard: ShardSpec | None = None
    #: ``--workers N``: N processes over N shards (seeded by ``seed``), one inventory.
    workers: int = 1
    seed: int = 0


@dataclass(slots=True)
class SweepReport:
    """What a sweep did. ``views`` are the endpoints it observed, judged (empty for a dry run);
    ``changes`` what recording their findings did; ``failing``: a finding reached --fail-on."""

    scan_id: int | None
    counters: SweepCounters
    interrupted: bool
    views: tuple[EndpointView, ...] = ()
    changes: FindingChanges | None = None
    failing: bool = False

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_FINDINGS if self.failing else 0


def read_list_file(path: Path) -> list[str]:
    """Entries of a targets/exclude/blocklist file (``-`` reads standard input)."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"cannot read {path}: {reason}") from None
    return targets.parse_lines(text, source=str(path))


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


async def _plan(options: SweepOptions, err: Console) -> targets.TargetPlan:
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


def starttls_default(mode: str) -> str | None:
    """The ``Target.protocol`` of ports given without one: ``auto`` -> ``None`` (chosen by
    port), ``off`` -> ``"tls"``, a protocol name -> itself. UsageError for anything else."""
    if mode == "auto":
        return None
    if mode == "off":
        return "tls"
    try:
        return targets.check_protocol(mode)
    except ValueError:
        choices = ", ".join(("auto", "off", *models.PROTOCOLS))
        raise UsageError(f"--starttls must be one of {choices} (got {mode!r})") from None


def sweep_spec(options: SweepOptions) -> dict[str, object]:
    lim = options.limits
    starttls: dict[str, object] = {}  # only when set: older scans stay resumable
    if options.protocols:
        starttls["protocols"] = [list(pair) for pair in options.protocols]
    if options.starttls != "auto":
        starttls["starttls"] = options.starttls
    if options.discovery.sources:
        starttls["sni_from"] = sorted(options.discovery.sources)
    if options.discovery.names:
        starttls["sni_names"] = list(options.discovery.names)
    if lim.all_certs:
        starttls["all_certs"] = True
    if options.shard is not None:
        starttls["shard"] = [options.shard.seed, options.shard.shards, options.shard.shard]
    if options.workers > 1:
        starttls["workers"] = [options.seed, options.workers]
    if options.job:
        starttls["job"] = options.job  # the serve job that ran it: the scan metrics' job label
    return scan_spec(
        **starttls,
        specs=list(options.specs),
        ports=list(options.ports),
        excludes=list(options.excludes),
        blocklist=list(options.blocklist),
        sni=options.sni,
        allow_public=options.allow_public,
        resolve=options.resolve_mode,
        connect_timeout=lim.connect_timeout,
        handshake_timeout=lim.handshake_timeout,
        deadline=lim.target_deadline,
    )


def _json_writer(options: SweepOptions, out: TextIO, cache: CertCache) -> OnResult | None:
    if options.json_mode == "off":
        return None

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


def run_command(options: SweepOptions, *, out: TextIO, err: Console) -> SweepReport:
    """``certscan sweep``: with ``--workers``, fork the workers first (``scanner.sweep.pool``:
    safe only before trio starts), then :func:`run`. Workers left without a job exit."""
    pool = None
    if options.workers > 1 and not options.dry_run:
        from scanner.sweep.pool import start_pool

        pool = start_pool(options.workers)
    try:
        return trio.run(lambda: run(options, out=out, err=err, pool=pool))
    finally:
        if pool is not None:
            pool.close()
            for proc in pool.procs:
                proc.join(5)


async def run(
    options: SweepOptions, *, out: TextIO, err: Console, pool: Pool | None = None
) -> SweepReport:
    """Plan, store and sweep. Raises CertscanError subclasses for the user's mistakes.
    ``pool``: the workers for ``--workers`` (started by :func:`run_command`)."""
    plan = await _plan(options, err)
    for note in plan.notes:
        err.print(f"note: {safe(note, 300)}", markup=False)
    if options.dry_run:
        shown = shard_plan(plan, options.shard)
        out.write(f"{shown.count} targets\n")
        for target in shown.first(options.dry_run_count):
            out.write(safe(target.label(), 300) + "\n")
        return SweepReport(None, SweepCounters(total=plan.count), False)
    if plan.count == 0:
        raise TargetError("nothing to scan: every target was excluded or could not be resolved")

    nofile = engine.raise_open_files_limit()
    concurrency = engine.effective_concurrency(options.limits.concurrency, nofile)
    limits = options.limits
    if concurrency != limits.concurrency:
        err.print(
            f"note: concurrency lowered to {concurrency} (open-files limit {nofile})",
            markup=False,
        )
        limits = dataclasses.replace(limits, concurrency=concurrency)

    inventory = await trio.to_thread.run_sync(Inventory, options.db_url)
    try:
        if options.workers > 1:
            from scanner.sweep.parallel import sweep_with_workers

            report = await sweep_with_workers(
                inventory, plan, limits, options, out=out, err=err, pool=pool
            )
        else:
            report = await _sweep_into(
                inventory, shard_plan(plan, options.shard), limits, options, out=out, err=err
            )
        # Findings first, then the status: a scan marked finished has its findings recorded,
        # and one whose findings could not be stored is failed (and resumable), not finished.
        status = "interrupted" if report.interrupted else "finished"
        try:
            await _judge(inventory, report, options, out=out, err=err)
        except StoreError:
            status = "failed"
            raise
        finally:
            await _close_scan(inventory, report.scan_id, status)
        if options.hooks is not None and not report.interrupted:
            await run_hooks_after(inventory, options.hooks, err=err)
        return report
    finally:
        await trio.to_thread.run_sync(inventory.close)


async def run_hooks_after(inventory: Inventory, hooks: HooksConfig, *, err: Console) -> int:
    """Run the renewal hooks on the open findings (``--run-hooks``, and ``serve`` after a job);
    print one summary line; return how many actions failed."""
    from exporters.hooks.runner import run_hooks  # only sweeps that run hooks pay for it

    outcomes = await run_hooks(inventory, hooks, now=datetime.now(UTC))
    queued = sum(o.planned.step == "queue" for o in outcomes)
    done = [o.result for o in outcomes if o.result is not None]
    failed = sum(not r.ok for r in done)
    err.print(
        f"hooks: {len(done) - failed} succeeded, {failed} failed, {queued} queued for approval"
        " (certscan hooks history)",
        markup=False,
    )
    return failed


async def _judge(
    inventory: Inventory, report: SweepReport, options: SweepOptions, *, out: TextIO, err: Console
) -> None:
    """Record the findings of what the sweep observed; write --report; decide --fail-on.

    An interrupted sweep's findings are recorded too (for the endpoints it did observe), but
    no report is written: a partial report would read as a clean bill for what was not swept.
    """
    scan_id = report.scan_id
    if scan_id is None:
        return
    criteria = options.criteria
    if criteria is None:
        criteria = assess.load_criteria(None, env=os.environ)
    now = datetime.now(UTC)
    judged = await trio.to_thread.run_sync(
        lambda: assess.record_scan(inventory, scan_id, criteria=criteria, now=now)
    )
    report.views, report.changes = judged.views, judged.changes
    report.failing = assess.failing(judged.views, options.fail_on)
    if options.summary:
        c = judged.changes
        err.print(
            f"findings: {findings_line(judged.views)} "
            f"(lifecycle: {c.new} new, {c.still_open} still open, {c.resolved} resolved)",
            markup=False,
        )
    target = options.report
    if target is None:
        return
    if report.interrupted:
        err.print("note: the sweep was interrupted; no report written", markup=False)
        return
    info = await trio.to_thread.run_sync(lambda: assess.scan_info(inventory, scan_id))
    document = build_report(judged.views, generated_at=now, scan=info)
    size = await trio.to_thread.run_sync(lambda: write_report(document, target, stdout=out))
    if not target.to_stdout:
        err.print(f"report: {safe(target.path, 200)} ({size:,} bytes)", markup=False)


async def _sweep_into(
    inventory: Inventory,
    plan: Plan,
    limits: EngineLimits,
    options: SweepOptions,
    *,
    out: TextIO,
    err: Console,
) -> SweepReport:
    spec = sweep_spec(options)
    start, done = 0, frozenset[tuple[str, int, str | None]]()
    digest = digest_of(plan)
    previous = inventory.find_resumable(spec) if options.resume else None
    if previous is not None:
        scan_id = previous.id
        await trio.to_thread.run_sync(lambda: check_resumable(inventory, scan_id, digest))
        watermark, done_set = await trio.to_thread.run_sync(inventory.resume_scan, scan_id)
        start, done = watermark, frozenset(done_set)
        err.print(f"resuming scan {scan_id} at target {start} of {plan.count}", markup=False)
    else:
        if options.resume:
            err.print("note: no interrupted sweep with these options; starting a new one")

        def start_scan() -> int:
            new = inventory.start_scan(spec=spec, total=plan.count)
            inventory.save_plan(new, digest)
            return new

        scan_id = await trio.to_thread.run_sync(start_scan)
    counters = SweepCounters(total=plan.count)
    counters.done = start
    job = SweepJob(
        plan=plan,
        limits=limits,
        scan_id=scan_id,
        start_index=start,
        already_done=done,
        discovery=options.discovery,
    )
    cache = CertCache(CACHE_ENTRIES)
    emit = _json_writer(options, out, cache)
    display = ProgressDisplay(err, counters, enabled=options.progress)
    with display:
        try:
            interrupted = await until_signalled(
                lambda: run_sweep(
                    job,
                    inventory_sink(inventory, scan_id),
                    counters,
                    on_result=emit,
                    on_tick=display.refresh,
                    cache=cache,
                )
            )
        except Exception:  # the writer failed (a StoreError, perhaps in a group): not running
            await _close_scan(inventory, scan_id, "failed")
            raise
    if options.summary:
        err.print(summary_table(counters, scan_id=scan_id, db_label=options.db_label))
    if interrupted:
        err.print(
            f"interrupted: {counters.done}/{counters.total} targets stored in scan {scan_id}; "
            "run the same command with --resume to continue",
            markup=False,
        )
    return SweepReport(scan_id, counters, interrupted)


async def _close_scan(inventory: Inventory, scan_id: int | None, status: str) -> None:
    """Set the scan's final status, shielded; a store that fails here too is left as it is
    (the error that brought us here is the one reported)."""
    if scan_id is None:
        return
    with trio.CancelScope(shield=True), contextlib.suppress(StoreError):
        await trio.to_thread.run_sync(lambda: inventory.finish_scan(scan_id, status))


def join_specs(*groups: Sequence[str]) -> tuple[str, ...]:
    return tuple(s for g in groups for s in g)
