"""The Celery application of the zone workers: broker URL, settings, queue and task names.

One factory, :func:`make_app`, used by dispatcher, agent and ingest alike, so the three agree on
serialisation and delivery. The settings that matter (module docstring of ``scanner.zones``):

* JSON only, in and out; no result backend (``task_ignore_result``): results flow as messages.
* ``task_acks_late`` + ``worker_prefetch_multiplier=1`` + ``task_reject_on_worker_lost``: a task
  is acknowledged after it ran, each worker process holds one at a time, and a task whose
  process died is requeued for another worker.
* ``task_time_limit`` below RabbitMQ's ``consumer_timeout`` (30 minutes by default), or the
  broker closes the channel of a long task and redelivers it anyway.
* Publisher confirms on AMQP (``confirm_publish``): a publish returns when the broker has the
  message. Redis has no confirms; its ``visibility_timeout`` is set above the time limit so an
  unacknowledged task is redelivered only when its worker is really gone.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from scanner.errors import OperationalError, UsageError

DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
BROKER_ENV = "CERTSCAN_BROKER"
INGEST_QUEUE = "certscan.ingest"
ZONE_PREFIX = "certscan.zone."

SHARD_TASK = "certscan.shard"
STARTED_TASK = "certscan.shard_started"
BATCH_TASK = "certscan.batch"
FINISHED_TASK = "certscan.shard_finished"
FINALIZE_TASK = "certscan.finalize"

#: Celery's hard time limit of a shard task (seconds) and its soft limit.
HARD_LIMIT = 1500.0
SOFT_FRACTION = 0.96
#: Seconds to connect to the broker before giving up (dispatch, start-up checks, publishing).
CONNECT_SECONDS = 4.0
#: Seconds one publish may take, confirm included.
PUBLISH_SECONDS = 30.0

_ZONE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def zone_queue(zone: str) -> str:
    """``certscan.zone.<zone>``; UsageError for a zone name outside ``[a-z0-9][a-z0-9_-]{0,62}``."""
    if _ZONE.fullmatch(zone) is None:
        raise UsageError(
            f"bad zone name {zone[:80]!r}: use 1-63 of a-z 0-9 _ - (the first a letter or digit)"
        )
    return ZONE_PREFIX + zone


def check_queue(name: str, option: str = "--ingest-queue") -> str:
    if QUEUE_NAME.fullmatch(name) is None:
        raise UsageError(f"bad {option} {name[:80]!r}: use 1-200 of A-Z a-z 0-9 . _ -")
    return name


def broker_url(given: str | None) -> str:
    """``--broker``, else ``$CERTSCAN_BROKER``, else the local RabbitMQ."""
    url = given or os.environ.get(BROKER_ENV) or DEFAULT_BROKER
    scheme = urlsplit(url).scheme
    if scheme not in ("amqp", "pyamqp", "amqps", "redis", "rediss"):
        raise UsageError(f"--broker must be an amqp:// or redis:// URL (got {safe_url(url)!r})")
    return url


def safe_url(url: str) -> str:
    """``url`` without its password (for messages and logs)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
    except ValueError:
        return "(unparseable URL)"


def is_amqp(url: str) -> bool:
    return urlsplit(url).scheme in ("amqp", "pyamqp", "amqps")


def make_app(broker: str, *, hard_limit: float = HARD_LIMIT, **extra: Any) -> Any:
    """A configured Celery app (celery is imported here, not at module import)."""
    from celery import Celery

    soft = hard_limit * SOFT_FRACTION
    transport: dict[str, Any] = {"max_retries": 2, "interval_start": 0, "interval_step": 1}
    if is_amqp(broker):
        transport["confirm_publish"] = True
    else:
        transport["visibility_timeout"] = int(hard_limit) + 600
    app = Celery("certscan", broker=broker, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        event_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=hard_limit,
        task_soft_time_limit=soft,
        task_default_queue=INGEST_QUEUE,
        task_create_missing_queues=True,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=CONNECT_SECONDS,
        broker_transport_options=transport,
        task_publish_retry_policy={
            "max_retries": 3,
            "interval_start": 0.5,
            "interval_step": 1,
            "interval_max": 3,
        },
        worker_send_task_events=False,
        worker_enable_remote_control=False,
        broker_heartbeat=30,
        **extra,
    )
    return app


def guarded_strategy(task: Any, app: Any, consumer: Any, **kwargs: Any) -> Any:
    """Celery's default strategy, after a check of the message's shape: one JSON object as the
    only argument. Celery itself dies on some malformed bodies (a crash loop, as the message is
    redelivered); raising InvalidTaskError instead makes it log the message and drop it."""
    from celery.exceptions import InvalidTaskError
    from celery.worker.strategy import default

    handler = default(task, app, consumer, **kwargs)

    def handle(message: Any, body: Any, *args: Any, **kw: Any) -> Any:
        decoded = body if body is not None else message.decode()
        if not (
            isinstance(decoded, list | tuple)
            and len(decoded) == 3
            and isinstance(decoded[0], list | tuple)
            and len(decoded[0]) == 1
            and isinstance(decoded[0][0], dict)
            and decoded[1] == {}
            and isinstance(decoded[2], dict)
        ):
            raise InvalidTaskError(f"{task.name}: not a certscan message (one JSON object)")
        return handler(message, body, *args, **kw)

    return handle


def task_options(name: str) -> dict[str, Any]:
    """How every certscan task is registered: its name, bound, the guarded strategy."""
    return {"name": name, "bind": True, "Strategy": f"{__name__}:guarded_strategy"}


def check_broker(app: Any) -> None:
    """Connect once (a few seconds at most); OperationalError naming the broker when it fails."""
    url = safe_url(app.conf.broker_url)
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=CONNECT_SECONDS)
    except Exception as exc:  # kombu raises the transport's own errors (OSError, AMQP, Redis...)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OperationalError(f"cannot reach the broker at {url}: {reason[:200]}") from None


def publish(
    app: Any, task: str, message: dict[str, Any], queue: str, *, producer: Any = None
) -> None:
    """Send one task message to ``queue`` (declared durable if need be), waiting for the
    broker's confirm; raises when it cannot within a few retries."""
    app.send_task(
        task,
        args=[message],
        queue=queue,
        producer=producer,
        retry=True,
        timeout=PUBLISH_SECONDS,
        confirm_timeout=PUBLISH_SECONDS,
    )


def run_worker(app: Any, *, queue: str, concurrency: int, hostname: str) -> None:
    """Run a Celery worker of ``app`` on ``queue`` until it is stopped (SIGTERM: warm shutdown):
    prefork processes, no gossip, mingle or heartbeat (certscan's workers need none)."""
    app.worker_main(
        [
            "worker",
            "--queues",
            queue,
            "--concurrency",
            str(concurrency),
            "--pool",
            "prefork",
            "--loglevel",
            "INFO",
            "--hostname",
            hostname,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )
