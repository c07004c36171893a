"""The zone agent: a Celery worker that sweeps shards and publishes what it saw.

One shard task, :func:`run_shard`, in a worker process (prefork: one shard per process at a
time, ``--concurrency`` processes):

1. check the message (:class:`~scanner.zones.messages.ShardTask`); a malformed one is logged on
   one line and dropped; then check it against the agent's own policy
   (:mod:`scanner.zones.policy`: ``--allow`` networks, ``--allow-public``, limits clamped,
   discovery names), failing the shard with the reason when it is refused;
2. start a new *attempt* (uuid4 hex, start time) and publish ``shard_started``;
3. rebuild the plan from the task's inputs, take the shard, and sweep it with the trio engine
   through :func:`scanner.sweep.pipeline.run_sweep`, whose sink publishes each batch (numbered from
   0) to the ingest queue from a worker thread, under a bounded timeout;
4. publish ``shard_finished`` with the number of batches and the final progress, or with the
   error that stopped the shard (a plan that does not rebuild identically, the time limit).

The agent holds no database credentials and trusts nothing it cannot redo: if it dies, the
broker redelivers the task (late acknowledgement) and a new attempt sweeps the whole shard
again; ingest keeps what the first stored and takes the shard over for the new attempt.

Time: the sweep stops itself a little before Celery's soft limit (flushing what completed) and
reports the shard failed, so Celery's hard limit is only a last resort. A publish that fails
(the broker went away) retries the task a few times; the redelivered work is idempotent.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import trio

from scanner.engine import crew as engine
from scanner.engine.syn.scan import SynStats
from scanner.errors import CertscanError, UsageError
from scanner.models import Handshake, Outcome, Progress
from scanner.plan.shards import ShardedPlan
from scanner.sweep.counters import SweepCounters
from scanner.sweep.discover import CONNECT, choose, summary, syn_settings
from scanner.sweep.pipeline import Batch, SweepJob, run_sweep
from scanner.zones import app as zapp
from scanner.zones.messages import (
    MAX_ITEMS,
    Attempt,
    BatchMessage,
    ShardFinished,
    ShardStarted,
    ShardTask,
)
from scanner.zones.policy import (
    AgentPolicy,
    PolicyError,
    check_discovery,
    check_plan,
    clamp_limits,
)
from scanner.zones.wire import DEFAULT_LIMITS, WireError

log = logging.getLogger("certscan.agent")

#: Distinct certificate bytes one batch message may carry (base64 adds a third).
MESSAGE_DER_BYTES = 4 * 1024 * 1024
#: Retries of a shard task whose results could not be published, and the pause between them.
PUBLISH_RETRIES = 3
RETRY_SECONDS = 10
_NO_PROGRESS = Progress(0, 0, 0, 0)

Publish = Callable[[str, dict[str, Any]], None]


class PublishFailed(Exception):
    """A message could not be handed to the broker in time."""


def agent_name() -> str:
    return f"{socket.gethostname()}/{os.getpid()}"


def sweep_seconds(soft_limit: float) -> float:
    """How long a shard may sweep: the soft limit, less a margin to flush and report."""
    return max(1.0, soft_limit - min(60.0, soft_limit * 0.1))


async def sweep_shard(
    task: ShardTask, plan: ShardedPlan, key: Attempt, publish: Publish, seconds: float
) -> ShardFinished:
    """Sweep ``plan`` (the shard) into batch messages; return the ``shard_finished`` to send.
    Raises :class:`PublishFailed` when the broker does not take a batch."""
    seq = 0
    last = _NO_PROGRESS

    async def sink(batch: Batch) -> None:
        nonlocal seq, last
        parts = list(split_batch([outcome for outcome, _ in batch.items], batch.indices))
        for n, (outcomes, indices) in enumerate(parts):
            # Only the last part carries the batch's progress: the earlier ones do not cover it.
            progress = (batch.progress or last) if n == len(parts) - 1 else last
            message = BatchMessage(
                key=key, seq=seq, outcomes=outcomes, indices=indices, progress=progress
            ).to_wire()
            await _publish(publish, zapp.BATCH_TASK, message)
            seq, last = seq + 1, progress

    nofile = engine.raise_open_files_limit()
    limits = task.limits
    concurrency = engine.effective_concurrency(limits.concurrency, nofile)
    if concurrency != limits.concurrency:
        limits = dataclasses.replace(limits, concurrency=concurrency)
    counters = SweepCounters(total=plan.count)
    error = None
    try:
        # --discover as dispatched, decided here: auto uses SYNs where this agent may.
        choice = choose(task.discover.mode) if task.discover is not None else CONNECT
    except UsageError as exc:
        return ShardFinished(key=key, batches=seq, progress=last, error=str(exc))
    syn = (
        syn_settings(task.discover, limits)
        if task.discover is not None and choice.mode == "syn"
        else None
    )
    job = SweepJob(
        plan=plan,
        limits=limits,
        scan_id=task.scan_id,
        discovery=task.discovery,
        syn=syn,
        syn_stats=None if syn is None else SynStats(),
    )
    log.info("scan %d shard %d: discovery %s", task.scan_id, task.shard, summary(choice, None))
    try:
        with trio.move_on_after(seconds) as scope:
            await run_sweep(job, sink, counters)
    except BaseException as raised:  # a sweep's errors arrive in (nested) exception groups
        found = _sole(raised)
        if isinstance(found, PublishFailed):
            raise found from None
        if not isinstance(found, Exception):
            raise
        log.exception("scan %d shard %d: internal error", task.scan_id, task.shard)
        error = f"internal error in the agent: {type(found).__name__}: {found}"
    else:
        if scope.cancelled_caught:
            error = (
                f"time limit: {last.done} of {plan.count} targets swept in {seconds:.0f} s; "
                "use a smaller --shard-size or a longer agent --time-limit"
            )
    return ShardFinished(key=key, batches=seq, progress=last, error=error)


def split_batch(
    outcomes: Sequence[Outcome], indices: Sequence[int]
) -> Iterator[tuple[tuple[Outcome, ...], tuple[int, ...]]]:
    """Cut a pipeline batch into messages of at most :data:`MESSAGE_DER_BYTES` of distinct
    certificates and :data:`~scanner.zones.messages.MAX_ITEMS` outcomes (hostile servers may
    present 256 KiB chains each: one batch must not outgrow the broker or ingest's bounds)."""
    part: list[Outcome] = []
    part_indices: list[int] = []
    seen: set[bytes] = set()
    size = 0
    for outcome, index in zip(outcomes, indices, strict=True):
        ders = set(_certificates(outcome))
        extra = sum(len(der) for der in ders - seen)
        if part and (
            size + extra > MESSAGE_DER_BYTES
            or len(part) >= MAX_ITEMS
            or len(seen | ders) > DEFAULT_LIMITS.max_certs
        ):
            yield tuple(part), tuple(part_indices)
            part, part_indices, seen, size = [], [], set(), 0
            extra = sum(len(der) for der in ders)
        part.append(outcome)
        part_indices.append(index)
        seen |= ders
        size += extra
    if part:
        yield tuple(part), tuple(part_indices)


def _certificates(outcome: Outcome) -> Iterator[bytes]:
    if isinstance(outcome, Handshake):
        yield from outcome.chain
        for alt in outcome.alt_chains:
            yield from alt


def _sole(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def _publish(publish: Publish, task: str, message: dict[str, Any]) -> None:
    try:
        with trio.fail_after(zapp.PUBLISH_SECONDS * 2):
            await trio.to_thread.run_sync(publish, task, message, abandon_on_cancel=True)
    except trio.TooSlowError:
        raise PublishFailed(f"publishing a {task} message timed out") from None
    except Exception as exc:  # kombu/amqp/redis errors, OSError
        raise PublishFailed(f"publishing a {task} message failed: {exc}") from exc


def policed(task: ShardTask, policy: AgentPolicy) -> tuple[ShardTask, ShardedPlan]:
    """The task within the agent's policy and its shard's plan; PolicyError (or the plan's
    own errors) when the agent refuses it."""
    plan = task.sharded_plan()
    check_plan(policy, plan.plan)
    task = dataclasses.replace(
        task, limits=clamp_limits(policy, task.limits), discovery=check_discovery(task.discovery)
    )
    return task, plan


def run_shard(
    message: object,
    publish_to: Callable[[str], Publish],
    soft_limit: float,
    policy: AgentPolicy | None = None,
) -> None:
    """The body of the shard task (see the module docstring). Raises PublishFailed."""
    try:
        task = ShardTask.from_wire(message)
    except WireError as exc:
        log.error("rejected shard task: %s", exc)
        return
    publish = publish_to(task.ingest_queue)
    key = Attempt(
        scan_id=task.scan_id,
        shard=task.shard,
        attempt=uuid.uuid4().hex,
        attempt_started_at=datetime.now(UTC),
    )
    _send(publish, zapp.STARTED_TASK, ShardStarted(key=key, agent=agent_name()).to_wire())
    log.info("scan %d shard %d/%d: attempt %s", task.scan_id, task.shard, task.shards, key.attempt)
    try:
        task, plan = policed(task, policy or AgentPolicy())
    except PolicyError as exc:
        log.error("scan %d shard %d: refused: %s", task.scan_id, task.shard, exc)
        error = f"refused by the agent's policy: {exc}"
        finished = ShardFinished(key=key, batches=0, progress=_NO_PROGRESS, error=error)
    except (WireError, CertscanError, ValueError) as exc:
        finished = ShardFinished(key=key, batches=0, progress=_NO_PROGRESS, error=str(exc))
    else:
        seconds = sweep_seconds(soft_limit)
        finished = trio.run(sweep_shard, task, plan, key, publish, seconds)
    _send(publish, zapp.FINISHED_TASK, finished.to_wire())
    log.info(
        "scan %d shard %d: %d batches, %d targets, %s",
        task.scan_id,
        task.shard,
        finished.batches,
        finished.progress.done,
        "ok" if finished.error is None else f"failed: {finished.error}",
    )


def _send(publish: Publish, task: str, message: dict[str, Any]) -> None:
    try:
        publish(task, message)
    except Exception as exc:
        raise PublishFailed(f"publishing a {task} message failed: {exc}") from exc


def register(app: Any, policy: AgentPolicy | None = None) -> None:
    """Add the shard task to ``app``, run under ``policy`` (default: local networks only)."""

    def publish_to(queue: str) -> Publish:
        def publish(task: str, message: dict[str, Any]) -> None:
            zapp.publish(app, task, message, queue)

        return publish

    def shard(self: Any, message: object) -> None:
        try:
            run_shard(message, publish_to, float(app.conf.task_soft_time_limit), policy)
        except PublishFailed as exc:
            log.error("%s; retrying the shard in %d s", exc, RETRY_SECONDS)
            raise self.retry(countdown=RETRY_SECONDS) from None

    app.task(**zapp.task_options(zapp.SHARD_TASK), max_retries=PUBLISH_RETRIES)(shard)


def run_agent(
    zone: str,
    broker: str,
    *,
    concurrency: int,
    time_limit: float,
    policy: AgentPolicy | None = None,
) -> None:
    """Run the agent worker for ``zone`` until stopped (SIGTERM: warm shutdown)."""
    queue = zapp.zone_queue(zone)
    app = zapp.make_app(broker, hard_limit=time_limit)
    zapp.check_broker(app)
    engine.raise_open_files_limit()  # inherited by the worker processes
    register(app, policy)
    zapp.run_worker(
        app,
        queue=queue,
        concurrency=concurrency,
        hostname=f"certscan-agent-{zone}@{socket.gethostname()}",
    )
