"""``sweep --workers N`` inside the sweep command: record the sharded scan, run the worker
processes (``scanner.sweep.pool``) with one combined progress display, and close the scan."""

from __future__ import annotations

from typing import TextIO

from scanner.engine.syn.scan import SynStats
from scanner.errors import OperationalError
from scanner.inventory.store import Inventory
from scanner.models import EngineLimits
from scanner.plan.shards import ShardSpec
from scanner.plan.targets import TargetPlan
from scanner.sweep.counters import SweepCounters
from scanner.sweep.discover import CONNECT, Choice, summary, syn_settings
from scanner.sweep.events import SweepEvents, quiet_progress
from scanner.sweep.options import SweepOptions, SweepReport, sweep_spec
from scanner.sweep.pool import Pool, WorkerJob, per_worker_limits, run_workers, shard_totals
from scanner.sweep.resumable import check_resumable, digest_of
from scanner.text import safe


async def sweep_with_workers(
    inventory: Inventory,
    plan: TargetPlan,
    limits: EngineLimits,
    options: SweepOptions,
    *,
    out: TextIO,
    events: SweepEvents,
    pool: Pool | None = None,
    choice: Choice = CONNECT,
) -> SweepReport:
    """Sweep ``plan`` with ``options.workers`` processes (``pool``'s, if given) into one
    sharded scan."""
    import trio

    workers, seed = options.workers, options.seed
    spec = sweep_spec(options)
    digest = digest_of(plan)
    previous = inventory.find_resumable(spec) if options.resume else None
    if previous is not None:
        scan_id = previous.id
        await trio.to_thread.run_sync(lambda: check_resumable(inventory, scan_id, digest))
        await trio.to_thread.run_sync(inventory.resume_scan, scan_id)
        events.note(f"resuming scan {scan_id} ({workers} shards)")
    else:
        if options.resume:
            events.note("note: no interrupted sweep with these options; starting a new one")

        def start() -> int:
            scan = inventory.start_scan(spec=spec, total=plan.count, shards=workers)
            inventory.add_shards(scan, shard_totals(plan.count, seed, workers))
            inventory.save_plan(scan, digest)
            return scan

        scan_id = await trio.to_thread.run_sync(start)
    syn = syn_settings(options.discover, limits, workers=workers) if choice.mode == "syn" else None
    jobs = [
        WorkerJob(
            db_url=options.db_url,
            scan_id=scan_id,
            plan=plan,
            spec=ShardSpec(seed, workers, i),
            limits=per_worker_limits(limits, workers),
            discovery=options.discovery,
            syn=syn,
            resume=previous is not None,
            json_mode=options.json_mode,
        )
        for i in range(workers)
    ]
    counters = SweepCounters(total=plan.count)
    counters.discovery = summary(choice, None)
    syn_stats = None if syn is None else SynStats()

    def write_json(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    with events.live(counters) if options.progress else quiet_progress() as tick:
        result = await run_workers(
            jobs, counters, write_json=write_json, on_tick=tick, pool=pool, syn_stats=syn_stats
        )
    status = "failed" if result.errors else "interrupted" if result.interrupted else "finished"

    def close() -> None:
        settled = {s.shard for s in inventory.shards(scan_id) if s.status in ("done", "failed")}
        for shard in result.unfinished:
            if shard not in settled:  # its worker died before it could say so
                inventory.mark_shard(scan_id, shard, "interrupted")
        if status == "failed":  # otherwise run() closes it once its findings are recorded
            inventory.finish_scan(scan_id, status)

    with trio.CancelScope(shield=True):
        await trio.to_thread.run_sync(close)
    if options.summary:
        events.finished(counters, scan_id=scan_id, db_label=options.db_label)
        events.note(f"discovery: {summary(choice, syn_stats)}")
    if result.errors:
        raise OperationalError(
            f"scan {scan_id}: {safe('; '.join(result.errors), 400)} "
            "(run the same command with --resume to finish it)"
        )
    if result.interrupted:
        events.note(
            f"interrupted: {counters.done}/{counters.total} targets stored in scan {scan_id}; "
            "run the same command with --resume to continue"
        )
    return SweepReport(scan_id, counters, result.interrupted)
