"""``sweep --workers N``: N processes, one shard each, writing to one inventory.

Theory of operation
-------------------
One Python process runs one trio loop on one core; a 2-core machine sweeps faster with two.
The parent plans (resolving names once), records one sharded scan with N shards
(``scanner.inventory.shards``) and hands shard ``i`` to worker ``i``, which sweeps its slice of the
seeded permutation (``scanner.plan.shards``) through the same pipeline as a plain sweep, into its
own
connection to the same database (SQLite serialises the writers with ``BEGIN IMMEDIATE``;
PostgreSQL upserts by natural keys), and resumes its own shard with ``--resume``.

Starting workers: the command line forks them (:func:`start_pool`) *before* it enters trio --
no threads, no database connections and no event loop exist yet, so a fork is safe, and the
workers inherit every module already imported: they are ready in milliseconds instead of the
second or so a fresh interpreter needs to import certscan. They then wait on a pipe for their
job. (Forking later, inside the trio run, would copy a running event loop and open database
connections into the child; ``spawn`` would pay the import again in each worker.) A caller
without a pool gets one started with ``spawn``.

Workers talk to the parent over one queue: counter snapshots (for the combined progress bar),
``--json`` lines (one writer, so lines never interleave) and their end (done, interrupted, or an
error line). Ctrl-C reaches every process of the terminal's group: each worker flushes what it
has and marks its shard interrupted; a SIGTERM to the parent alone is passed on to the workers.
A worker that dies without a word leaves its shard interrupted, and the scan resumable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import queue
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from scanner.engine.discovery import DiscoveryOptions
from scanner.engine.syn.scan import SynSettings, SynStats
from scanner.models import CertInfo, EngineLimits, Outcome
from scanner.plan.shards import ShardedPlan, ShardSpec, shard_size
from scanner.plan.targets import TargetPlan
from scanner.sweep.counters import SweepCounters

#: How often a worker reports its counters.
REPORT_SECONDS = 0.25
#: Exit status of a worker that stopped on a signal, and of one that failed.
INTERRUPTED, FAILED = 130, 3


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerJob:
    """Everything worker ``spec.shard`` needs (picklable: it crosses a process boundary)."""

    db_url: str
    scan_id: int
    plan: TargetPlan
    spec: ShardSpec
    limits: EngineLimits
    discovery: DiscoveryOptions | None
    resume: bool
    json_mode: str
    #: ``--discover syn``: this worker's SYN scan (its share of the rate); None: connect.
    syn: SynSettings | None = None


def per_worker_limits(limits: EngineLimits, workers: int) -> EngineLimits:
    """The engine limits of one of ``workers`` processes: global limits are split between them
    (``--per-address`` stays: the shards of one address are spread over every worker, so it
    holds per worker)."""
    return dataclasses.replace(
        limits,
        concurrency=max(1, limits.concurrency // workers),
        handshakes=max(1, limits.handshakes // workers),
        rate=None if limits.rate is None else limits.rate / workers,
    )


def shard_totals(count: int, seed: int, workers: int) -> list[int]:
    return [shard_size(count, ShardSpec(seed, workers, i)) for i in range(workers)]


# --- the worker process -------------------------------------------------------------------------


def worker_main(job: WorkerJob, messages: Any) -> None:
    """The entry point of a worker process: sweep one shard; report on ``messages``."""
    shard = job.spec.shard
    try:
        status = trio.run(_sweep_shard, job, messages)
    except KeyboardInterrupt:  # Ctrl-C before the sweep's own signal handling was in place
        messages.put(("end", shard, "interrupted", None))
        raise SystemExit(INTERRUPTED) from None
    except BaseException as exc:
        messages.put(("end", shard, "failed", _one_line(exc)))
        raise SystemExit(FAILED) from None
    messages.put(("end", shard, status, None))
    raise SystemExit(INTERRUPTED if status == "interrupted" else 0)


def _one_line(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


async def _sweep_shard(job: WorkerJob, messages: Any) -> str:
    from scanner.inventory.store import Inventory
    from scanner.serialize import json_line, outcome_to_dict
    from scanner.sweep.pipeline import (
        SweepJob,
        inventory_sink,
        run_sweep,
        sweep_cache,
        until_signalled,
    )

    shard = job.spec.shard
    plan = ShardedPlan(job.plan, job.spec)
    inventory = await trio.to_thread.run_sync(Inventory, job.db_url)
    try:
        start, done = 0, frozenset[tuple[str, int, str | None]]()
        if job.resume:
            mark, found = await trio.to_thread.run_sync(inventory.resume_shard, job.scan_id, shard)
            start, done = mark, frozenset(found)
        agent = f"{socket.gethostname()}/{os.getpid()}"
        await trio.to_thread.run_sync(
            lambda: inventory.mark_shard(job.scan_id, shard, "running", agent=agent)
        )
        counters = SweepCounters(total=plan.count)
        counters.done = start
        syn_stats = None if job.syn is None else SynStats()
        reporter = _Reporter(messages, shard, counters, syn_stats)
        cache = sweep_cache()

        def emit(outcome: Outcome, chain: tuple[CertInfo, ...]) -> None:
            if job.json_mode == "open" and not _connected(outcome):
                return
            alts: tuple[tuple[CertInfo, ...], ...] = ()
            extra = getattr(outcome, "alt_chains", ())
            if extra:
                alts = tuple(tuple(cache.get(der) for der in alt) for alt in extra)
            messages.put(("json", json_line(outcome_to_dict(outcome, chain, alts))))

        sweep = SweepJob(
            plan=plan,
            limits=job.limits,
            scan_id=job.scan_id,
            start_index=start,
            already_done=done,
            discovery=job.discovery,
            syn=job.syn,
            syn_stats=syn_stats,
        )
        interrupted = await until_signalled(
            lambda: run_sweep(
                sweep,
                inventory_sink(inventory, job.scan_id, shard=shard),
                counters,
                on_result=None if job.json_mode == "off" else emit,
                on_tick=reporter.tick,
                cache=cache,
            )
        )
        reporter.tick(force=True)
        status = "interrupted" if interrupted else "done"
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(lambda: inventory.mark_shard(job.scan_id, shard, status))
        return status
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(inventory.close)


def _connected(outcome: Outcome) -> bool:
    return bool(getattr(outcome, "connected", True))


class _Reporter:
    """Sends a worker's counters to the parent, at most every REPORT_SECONDS."""

    def __init__(
        self, messages: Any, shard: int, counters: SweepCounters, syn: SynStats | None = None
    ) -> None:
        self._messages = messages
        self._shard = shard
        self._counters = counters
        self._syn = syn
        self._sent: set[str] = set()
        self._last = 0.0

    def tick(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < REPORT_SECONDS:
            return
        self._last = now
        c = self._counters
        new = c.certificates - self._sent
        self._sent |= new
        snapshot = {
            "done": c.done,
            "total": c.total,
            "open": c.open,
            "chains": c.chains,
            "by_status": dict(c.by_status),
            "certificates": sorted(new),
            "phase": c.phase,
            "syn": None if self._syn is None else dataclasses.asdict(self._syn),
        }
        self._messages.put(("progress", self._shard, snapshot))


# --- the parent ---------------------------------------------------------------------------------


@dataclass(slots=True)
class WorkersResult:
    """How the workers ended: ``interrupted`` if any stopped early, ``errors`` one line each,
    ``unfinished`` the shards whose worker did not say it finished them."""

    interrupted: bool
    errors: list[str]
    unfinished: list[int]


class _Combined:
    """The parent's counters: the sum of the workers' latest snapshots."""

    def __init__(self, counters: SweepCounters, workers: int, syn: SynStats | None = None) -> None:
        self.counters = counters
        self._latest: dict[int, dict[str, Any]] = {}
        self._workers = workers
        self._syn = syn

    def update(self, shard: int, snapshot: dict[str, Any]) -> None:
        self._latest[shard] = snapshot
        c = self.counters
        c.done = sum(s["done"] for s in self._latest.values())
        c.open = sum(s["open"] for s in self._latest.values())
        c.chains = sum(s["chains"] for s in self._latest.values())
        # Discovered endpoints raise a worker's total; unreported workers count their shard.
        c.total = max(c.total, sum(s["total"] for s in self._latest.values()))
        by_status: dict[str, int] = {}
        for s in self._latest.values():
            for k, v in s["by_status"].items():
                by_status[k] = by_status.get(k, 0) + v
        c.by_status = by_status
        c.certificates.update(snapshot["certificates"])
        # SYN discovery: "syn" while any worker still sends, the workers' packet counts summed.
        phases = {s.get("phase", "sweeping") for s in self._latest.values()}
        c.phase = "syn" if "syn" in phases else phases.pop() if len(phases) == 1 else c.phase
        if self._syn is not None:
            for name in (f.name for f in dataclasses.fields(SynStats)):
                total = sum((s.get("syn") or {}).get(name, 0) for s in self._latest.values())
                setattr(self._syn, name, total)


@dataclass(slots=True)
class Pool:
    """Worker processes waiting for their jobs (:func:`start_pool`)."""

    procs: list[Any]
    pipes: list[Any]
    messages: Any
    started: bool = False

    def send(self, jobs: list[WorkerJob]) -> None:
        """Give worker ``i`` job ``i``."""
        for pipe, job in zip(self.pipes, jobs, strict=True):
            pipe.send(job)
        self.started = True
        self.close()

    def close(self) -> None:
        """Tell workers that got no job to exit, and let go of the pipes."""
        for pipe in self.pipes:
            if not self.started:
                with contextlib.suppress(OSError):
                    pipe.send(None)
            pipe.close()
        self.pipes = []


def start_pool(size: int, *, method: str = "fork") -> Pool:
    """``size`` worker processes that wait for a job. ``fork`` only from a process with no
    threads, event loop or open database (the command line, before ``trio.run``)."""
    context: Any = multiprocessing.get_context(method)
    messages = context.Queue()
    procs: list[Any] = []
    pipes: list[Any] = []
    sys.stdout.flush()  # a forked worker flushes its copy of these buffers when it exits
    sys.stderr.flush()
    parent = os.getpid()
    for i in range(size):
        ours, theirs = context.Pipe()
        # A forked worker inherits the parent's ends of its own and earlier pipes: it closes
        # them, or a closed end in the parent would never read as closed in the worker.
        inherited = [*pipes, ours] if method == "fork" else []
        proc = context.Process(
            target=_wait_for_job,
            args=(theirs, messages, parent, inherited),
            name=f"certscan-shard-{i}",
        )
        proc.start()
        theirs.close()
        procs.append(proc)
        pipes.append(ours)
    return Pool(procs, pipes, messages)


def _wait_for_job(pipe: Any, messages: Any, parent: int, inherited: list[Any]) -> None:
    """A pooled worker: wait for a job and run it; exit quietly if none comes (the parent
    says so, closes the pipe, or dies)."""
    for other in inherited:
        other.close()
    try:
        while not pipe.poll(0.5):
            if os.getppid() != parent:
                raise SystemExit(0)
        job = pipe.recv()
    except (EOFError, OSError, KeyboardInterrupt):
        raise SystemExit(0) from None
    finally:
        pipe.close()
    if not isinstance(job, WorkerJob):
        raise SystemExit(0)
    worker_main(job, messages)


async def run_workers(
    jobs: list[WorkerJob],
    counters: SweepCounters,
    *,
    write_json: Callable[[str], None],
    on_tick: Callable[[], None],
    pool: Pool | None = None,
    syn_stats: SynStats | None = None,
) -> WorkersResult:
    """Run each job in a worker of ``pool`` (one is started if None), combine their progress
    into ``counters`` (and the workers' SYN counts into ``syn_stats``), wait for them all."""
    if pool is None or len(pool.procs) != len(jobs):
        if pool is not None:
            pool.close()
        pool = await trio.to_thread.run_sync(lambda: start_pool(len(jobs), method="spawn"))
    messages = pool.messages
    combined = _Combined(counters, len(jobs), syn_stats)
    procs = pool.procs
    ended: dict[int, tuple[str, str | None]] = {}
    interrupted = False
    try:
        pool.send(jobs)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:

                async def forward() -> None:
                    nonlocal interrupted
                    async for signum in signals:
                        interrupted = True
                        if signum == signal.SIGTERM:  # Ctrl-C reached the workers already
                            for proc in procs:
                                if proc.is_alive() and proc.pid is not None:
                                    with contextlib.suppress(ProcessLookupError):
                                        os.kill(proc.pid, signal.SIGTERM)

                nursery.start_soon(forward)
                await _drain(messages, procs, combined, ended, write_json, on_tick)
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            for proc in procs:
                await trio.to_thread.run_sync(proc.join, 30)
                if proc.is_alive():
                    proc.kill()
                    await trio.to_thread.run_sync(proc.join, 5)
        messages.close()
    errors = [f"shard {i}: {msg}" for i, (status, msg) in sorted(ended.items()) if msg]
    for i, proc in enumerate(procs):
        # A worker that died during a Ctrl-C (before it could say so) was interrupted.
        if i not in ended and proc.exitcode not in (0, INTERRUPTED) and not interrupted:
            errors.append(f"shard {i}: worker exited with status {proc.exitcode}")
    unfinished = [i for i in range(len(procs)) if ended.get(i, ("", None))[0] != "done"]
    return WorkersResult(
        interrupted=interrupted or bool(unfinished), errors=errors, unfinished=unfinished
    )


async def _drain(
    messages: Any,
    procs: list[Any],
    combined: _Combined,
    ended: dict[int, tuple[str, str | None]],
    write_json: Callable[[str], None],
    on_tick: Callable[[], None],
) -> None:
    """Read worker messages until every worker has ended and the queue is empty."""

    def get() -> Any:
        try:
            return messages.get(timeout=REPORT_SECONDS)
        except queue.Empty:
            return None

    while True:
        message = await trio.to_thread.run_sync(get, abandon_on_cancel=True)
        if message is None:
            on_tick()
            if all(not p.is_alive() for p in procs):
                return
            continue
        match message:
            case ("progress", int(shard), dict(snapshot)):
                combined.update(shard, snapshot)
            case ("json", str(line)):
                write_json(line)
            case ("end", int(shard), str(status), error):
                ended[shard] = (status, error if isinstance(error, str) else None)
        if len(ended) == len(procs):
            on_tick()
            return
