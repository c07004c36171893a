"""``certscan serve``: one trio process running the HTTP app (hypercorn's trio worker) and the
scan scheduler in one nursery.

Theory of operation
-------------------
:func:`run_daemon` loads the config (``[serve]``, ``[jobs.NAME]``, the policy and trust), opens
two read lanes on the inventory for the app, and runs three tasks: hypercorn serving
:func:`exporters.serve.api.create_app`, the :class:`~exporters.serve.scheduler.Scheduler`, and a
signal
watcher. Each job run is exactly ``certscan sweep``'s code path (:func:`scanner.sweep.run.run`)
with the job's targets, so a scheduled scan stores, judges and records findings as a manual one.
A job with ``workers > 1`` runs that code path in a child process (:mod:`exporters.serve.child`,
the only way to fork sweep workers once the daemon's event loop runs), bounded by the job's
``run_timeout``; its outcome and errors are the job's, logged and counted like any run.

A job with ``zone = "NAME"`` is not scanned here: each run is ``certscan dispatch --zone NAME``
(:func:`scanner.zones.dispatch.dispatch`, in a worker thread): it plans the sweep, records a
sharded scan whose spec names the job, and queues its shards for that zone's agents. The run
ends when the shards are queued; the daemon does not wait for the agents, whose results
``certscan ingest`` stores (findings included) as they come. So the job's metrics
(``certscan_job_*``) count dispatches, and the scan's progress is in the inventory
(``certscan_scan_shards``, ``certscan_scan_progress_ratio``, ``/api/v1/scans/{id}/shards``).
A dispatch that cannot reach the broker fails the run (logged; the job runs again at its next
slot) and leaves no scan behind. Celery is imported only by a dispatching run.

Signals. SIGTERM/SIGINT stop the process: hypercorn stops accepting and finishes requests in
flight (at most :data:`GRACE_SECONDS`), the scheduler is cancelled, and exit status is 0. While a
sweep runs it holds its own SIGINT/SIGTERM receiver (as on the command line): the sweep stops,
marks its scan ``interrupted`` (what it stored stays) and returns; the daemon sees the
interrupted sweep and shuts down the same way. SIGHUP re-reads the config: policy, trust, token
and jobs change (a job whose schedule is unchanged keeps its next slot); ``listen`` and ``db``
need a restart. A config that fails to load is logged and the old one kept.

``--once`` runs every job once, one after another, and exits: 0 when all succeeded, 3 when one
failed, 130 when interrupted.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import signal
from collections.abc import Mapping
from typing import Any, cast

import sqlalchemy as sa
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from exporters.serve.api import ApiState, Reader, create_app
from exporters.serve.config import JobSpec, parse_listen
from exporters.serve.defaults import DEFAULT_PORT
from exporters.serve.guard import allowed_host_names, exposure_warning
from exporters.serve.log import LogEvents
from exporters.serve.runs import DaemonOptions, Loaded, job_sweep, load, scan_summary
from exporters.serve.scheduler import Scheduler
from scanner.errors import OperationalError, UsageError
from scanner.inventory.store import Inventory, db_url
from scanner.sweep.options import EXIT_INTERRUPTED, SweepOptions, sweep_spec
from scanner.sweep.run import run as run_sweep

__all__ = ["GRACE_SECONDS", "Daemon", "DaemonOptions", "Loaded", "load", "run_daemon"]

log = logging.getLogger("certscan.serve")
#: Longest wait for HTTP requests in flight at shutdown.
GRACE_SECONDS = 2.0


class Daemon:
    """The daemon's moving parts; built by :func:`run_daemon`, driven by :meth:`serve`."""

    def __init__(self, options: DaemonOptions, loaded: Loaded) -> None:
        self.options = options
        self.loaded = loaded
        url = db_url(options.db or os.environ.get("CERTSCAN_DB") or loaded.settings.db)
        self.db_url = url
        self.db_label = sa.make_url(url).render_as_string(hide_password=True)
        self.shutdown = trio.Event()
        self.interrupted = False
        self.state: ApiState | None = None
        self.reader: Reader | None = None  # the API lane, while serving
        self.listen_host = "127.0.0.1"  # set by serve()
        self.scheduler = Scheduler(
            {n: j.schedule for n, j in loaded.settings.jobs.items()}, self.run_job
        )

    def token(self) -> str | None:
        return os.environ.get("CERTSCAN_API_TOKEN") or self.loaded.settings.token

    def tokens(self) -> dict[str, str]:
        """Every accepted bearer token by name: ``default`` (``token`` or the environment)
        and the ``[serve.tokens]``."""
        named = dict(self.loaded.settings.tokens)
        token = self.token()
        if token is not None and token not in named.values():
            named.setdefault("default", token)
        return named

    def read_token(self) -> str | None:
        return os.environ.get("CERTSCAN_API_READ_TOKEN") or self.loaded.settings.read_token

    async def run_job(self, name: str) -> None:
        """One run of job ``name`` as configured now: ``certscan sweep`` with its options."""
        job = self.loaded.settings.jobs[name]
        options = job_sweep(name, job, self.loaded, self.db_url, self.db_label)
        events = LogEvents(log, job=name)
        if not job.specs:  # a job of certificate files only
            await self._import_files(name, job)
            return
        if job.zone is not None:
            await self._dispatch(name, job, options)
            return
        if job.sweep.workers > 1:
            await self._run_child(name, job)
            return
        before = await self._newest_scan_id()
        try:
            report = await run_sweep(options, out=io.StringIO(), events=events)
        except trio.Cancelled:
            # stopped before the sweep took the signal itself: close what it started
            with trio.CancelScope(shield=True, deadline=trio.current_time() + GRACE_SECONDS):
                await self._interrupt_running(after=before, spec=sweep_spec(options))
            raise
        await self._stored(name, job, scan_summary(report))

    async def _stored(self, name: str, job: JobSpec, summary: Mapping[str, Any]) -> None:
        """Log a finished sweep (in this process or a child); stop when it was interrupted."""
        if self.state is not None:
            self.state.metrics.invalidate()  # /metrics shows this scan at the next scrape
        log.info("scan stored", extra={"job": name, **summary})
        if summary.get("interrupted"):  # the sweep took SIGTERM/SIGINT: the daemon stops too
            self.interrupted = True
            self.shutdown.set()
        elif job.files:
            await self._import_files(name, job)

    async def _run_child(self, name: str, job: JobSpec) -> None:
        """One run of a ``workers > 1`` job: ``python -m exporters.serve.child`` sweeps with
        the job's options (it re-reads the config) and forks the workers, bounded by
        ``run_timeout``; its log lines go to this daemon's stderr, its summary (one JSON line
        on stdout) is logged here. Exit 0/1: stored; 130: interrupted (the daemon stops
        too); anything else, or the timeout, fails the run."""
        from exporters.serve.child import child_argv, read_summary

        argv = child_argv(
            job=name, db=self.db_url, config=self.options.config, log_format=self.options.log_format
        )
        timeout = job.sweep.run_timeout
        with trio.move_on_after(timeout) as scope:
            done = await trio.run_process(argv, capture_stdout=True, check=False)
        if scope.cancelled_caught:  # the child was sent SIGTERM (then SIGKILL after 5 s)
            raise OperationalError(
                f"the sweep ran past run_timeout ({timeout:g} s) and was stopped; "
                "its scan is marked interrupted"
            )
        summary = read_summary(done.stdout)
        if done.returncode in (0, 1, EXIT_INTERRUPTED) and "scan_id" in summary:
            await self._stored(name, job, summary)
            return
        reason = summary.get("error") or f"the sweep process exited with status {done.returncode}"
        raise OperationalError(str(reason))

    async def _import_files(self, name: str, job: JobSpec) -> None:
        """The job's ``files`` into the inventory (``certscan import``), in a worker thread."""
        from scanner.sweep.files import ImportOptions, import_files

        password = None if job.password_env is None else os.environ.get(job.password_env)
        options = ImportOptions(
            paths=job.files,
            roots=job.file_roots,
            password=password,
            criteria=self.loaded.criteria,
        )

        def work() -> tuple[int, int, int, int]:
            with Inventory(self.db_url) as inventory:
                done = import_files(inventory, options)
            return done.scan_id, len(done.endpoints), len(done.refused), done.findings

        scan_id, endpoints, refused, findings = await trio.to_thread.run_sync(work)
        log.info(
            "files imported",
            extra={
                "job": name,
                "scan_id": scan_id,
                "endpoints": endpoints,
                "refused": refused,
                "findings": findings,
            },
        )

    async def _dispatch(self, name: str, job: JobSpec, options: SweepOptions) -> None:
        """One run of a zone job: queue its shards (module docstring); no waiting for agents."""
        from scanner.zones.app import broker_url, safe_url
        from scanner.zones.dispatch import DispatchOptions, dispatch

        assert job.zone is not None
        request = DispatchOptions(
            sweep=options,
            zone=job.zone,
            addresses_per_shard=job.shard_size,
            seed=None,
            broker=broker_url(job.broker),
        )
        if job.ingest_queue is not None:
            request = dataclasses.replace(request, ingest_queue=job.ingest_queue)
        # dispatch() resolves names with its own trio.run: that needs a thread of its own
        sent = await trio.to_thread.run_sync(dispatch, request)
        log.info(
            "scan dispatched",
            extra={
                "job": name,
                "scan_id": sent.scan_id,
                "zone": sent.zone,
                "queue": sent.queue,
                "shards": sent.shards,
                "targets": sent.targets,
                "broker": safe_url(request.broker),
            },
        )
        for note in sent.notes:
            log.warning(note, extra={"job": name, "scan_id": sent.scan_id})

    async def _newest_scan_id(self) -> int:
        if self.reader is None:
            return 2**62  # no inventory open: nothing to look after
        newest = await self.reader.call(lambda inv: inv.latest_scan())
        return 0 if newest is None else newest.id

    async def _interrupt_running(self, *, after: int, spec: Mapping[str, object]) -> None:
        reader = self.reader
        if reader is None:
            return
        closed = await reader.call(lambda inv: interrupt_own(inv, after=after, spec=spec))
        if closed:
            log.info("scans marked interrupted", extra={"scan_ids": closed})

    async def _signals(self, state: ApiState) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    await self.reload(state)
                    continue
                log.info("stopping", extra={"signal": signal.Signals(signum).name})
                self.shutdown.set()
                return

    async def reload(self, state: ApiState) -> None:
        try:
            loaded = await trio.to_thread.run_sync(load, self.options)
        except UsageError as exc:
            log.error("reload failed; keeping the old config", extra={"error": str(exc)})
            return
        old = self.loaded.settings
        if (loaded.settings.listen, loaded.settings.db) != (old.listen, old.db):
            log.warning("serve.listen and serve.db change only on restart")
        self.loaded = loaded
        state.criteria, state.tokens = loaded.criteria, self.tokens()
        state.read_token = self.read_token()
        state.allowed_hosts = allowed_host_names(self.listen_host, loaded.settings.allowed_hosts)
        self.scheduler.replace({n: j.schedule for n, j in loaded.settings.jobs.items()})
        log.info("config reloaded", extra={"jobs": sorted(loaded.settings.jobs)})

    async def serve(self) -> int:
        listen = self.options.listen or self.loaded.settings.listen or f"127.0.0.1:{DEFAULT_PORT}"
        host, port = parse_listen(listen)
        self.listen_host = host
        warning = exposure_warning(host, self.read_token())
        if warning is not None:
            log.warning(warning)
        reader = Reader(await trio.to_thread.run_sync(Inventory, self.db_url))
        self.reader = reader
        metrics_reader = Reader(await trio.to_thread.run_sync(Inventory, self.db_url))
        state = ApiState(
            reader=reader,
            metrics_reader=metrics_reader,
            criteria=self.loaded.criteria,
            tokens=self.tokens(),
            scheduler=self.scheduler,
            read_token=self.read_token(),
            allowed_hosts=allowed_host_names(host, self.loaded.settings.allowed_hosts),
        )
        self.state = state
        config = HypercornConfig()
        config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
        config.accesslog = None
        config.errorlog = logging.getLogger("certscan.http")
        config.graceful_timeout = GRACE_SECONDS
        scheduling, watching = trio.CancelScope(), trio.CancelScope()

        async def scheduler(task_status: trio.TaskStatus[None]) -> None:
            with scheduling:
                await self.scheduler.serve(task_status=task_status)

        async def signals() -> None:
            with watching:
                await self._signals(state)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(signals)
                try:
                    binds = await nursery.start(
                        lambda task_status: hypercorn_serve(
                            cast(Any, create_app(state)),  # its ASGI types and ours differ
                            config,
                            shutdown_trigger=self.shutdown.wait,
                            task_status=task_status,
                        )
                    )
                except BaseException as exc:
                    found = _sole(exc)
                    if isinstance(found, OSError):
                        reason = found.strerror or str(found)
                        raise OperationalError(f"cannot listen on {listen}: {reason}") from None
                    raise
                log.info(
                    "listening",
                    extra={"urls": binds, "db": self.db_label, "jobs": sorted(self.scheduler.jobs)},
                )
                await nursery.start(scheduler)
                await self.shutdown.wait()
                scheduling.cancel()
                watching.cancel()
                # hypercorn finishes requests in flight, for at most GRACE_SECONDS
                nursery.cancel_scope.deadline = trio.current_time() + GRACE_SECONDS + 1
        finally:
            reader.close()
            metrics_reader.close()
        log.info("stopped")
        return 0

    async def once(self) -> int:
        self.reader = Reader(await trio.to_thread.run_sync(Inventory, self.db_url))
        try:
            return await self._once()
        finally:
            self.reader.close()

    async def _once(self) -> int:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:  # between sweeps (a sweep takes its own signals)
                with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for signum in signals:
                        log.info("stopping", extra={"signal": signal.Signals(signum).name})
                        self.interrupted = True
                        nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            ok = await self.scheduler.run_once(stop=lambda: self.interrupted)
            nursery.cancel_scope.cancel()
        if self.interrupted:
            return EXIT_INTERRUPTED
        return 0 if ok else 3


def interrupt_own(inv: Inventory, *, after: int, spec: Mapping[str, object]) -> list[int]:
    """Mark ``interrupted`` the scan this daemon's sweep started (newer than scan ``after``,
    still running, with the sweep's own ``spec``); never another process's scan, nor a
    dispatched zone scan, whose agents and ingest go on without the daemon."""
    own = inv.find_resumable(spec)
    if own is None or own.id <= after or own.status != "running" or own.shards is not None:
        return []
    inv.finish_scan(own.id, "interrupted")
    return [own.id]


def _sole(exc: BaseException) -> BaseException:
    """The one exception inside (nested) single-member exception groups, else ``exc``."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def run_daemon(options: DaemonOptions) -> int:
    """Run ``certscan serve`` (see the module docstring); returns the exit status."""
    loaded = load(options)
    if options.listen is not None:
        parse_listen(options.listen)
    daemon = Daemon(options, loaded)
    if options.once:
        if not loaded.settings.jobs:
            raise UsageError("--once: the config has no [jobs.NAME] section")
        return trio.run(daemon.once)
    return trio.run(daemon.serve)
