"""``certscan dispatch``, ``agent`` and ``ingest``: distributed sweeps over network zones.

Option parsing only; the work is in :mod:`scanner.zones` (imported inside each command, so
celery costs nothing to the other commands). The broker is ``--broker``, else
``$CERTSCAN_BROKER``, else the local RabbitMQ; its password is never printed.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from scanner.cli import options as sa
from scanner.cli.options import DbOption
from scanner.errors import UsageError
from scanner.inventory.location import db_url
from scanner.serialize import json_line
from scanner.text import safe

BrokerOption = Annotated[
    str | None,
    typer.Option(
        "--broker",
        metavar="URL",
        envvar="CERTSCAN_BROKER",
        show_envvar=True,
        help="Celery broker: amqp://user:pass@host:5672/vhost or redis://host:6379/0. "
        "Default: the local RabbitMQ (127.0.0.1:5672, user guest).",
    ),
]
ZoneOption = Annotated[
    str,
    typer.Option(
        "--zone",
        metavar="NAME",
        help="Network zone (a-z 0-9 _ -): its agents consume the queue certscan.zone.NAME.",
    ),
]
IngestQueueOption = Annotated[
    str,
    typer.Option(
        "--ingest-queue",
        metavar="NAME",
        help="Queue the results travel on to `certscan ingest` (one per inventory).",
    ),
]
ConcurrencyOption = Annotated[
    int, typer.Option("--concurrency", metavar="N", help="Worker processes (one task each).")
]


#: ``dispatch``'s limits apply to each shard task, not to the whole sweep.
TaskConcurrencyOption = Annotated[
    int,
    typer.Option("--concurrency", metavar="N", help="Connections in flight per shard task."),
]
TaskRateOption = Annotated[
    float | None,
    typer.Option("--rate", metavar="PER_SECOND", help="New connections per second per task."),
]
TaskHandshakesOption = Annotated[
    int, typer.Option("--handshakes", metavar="N", help="TLS handshakes in flight per task.")
]


def dispatch(
    ctx: typer.Context,
    zone: ZoneOption,
    # The options that describe the sweep (scanner.cli.options): read through ctx.params.
    target: sa.TargetArgument = None,
    shard_size: Annotated[
        str,
        typer.Option(
            "--shard-size",
            metavar="/N|COUNT",
            help="Addresses per shard (every port of them): an IPv4 prefix (/24 = 256) or a count.",
        ),
    ] = "/24",
    seed: Annotated[
        int | None,
        typer.Option("--seed", metavar="S", help="Seed of the target order (default: random)."),
    ] = None,
    file: sa.FileOption = None,
    targets_csv: sa.CsvOption = None,
    ports: sa.PortsOption = None,
    starttls: sa.StarttlsOption = "auto",
    exclude: sa.ExcludeOption = None,
    exclude_file: sa.ExcludeFileOption = None,
    blocklist: sa.BlocklistOption = None,
    sni: sa.SniOption = None,
    sni_from: sa.SniFromOption = None,
    sni_file: sa.SniFileOption = None,
    all_certs: sa.AllCertsOption = False,
    resolve: sa.ResolveOption = "all",
    allow_public: sa.AllowPublicOption = False,
    max_targets: sa.MaxTargetsOption = 2**24,
    concurrency: TaskConcurrencyOption = 4096,
    rate: TaskRateOption = None,
    discover: sa.DiscoverOption = "auto",
    syn_retries: sa.SynRetriesOption = 1,
    syn_wait: sa.SynWaitOption = 1.0,
    handshakes: TaskHandshakesOption = 256,
    probe_protocols: sa.ProbeProtocolsOption = False,
    per_address: sa.PerAddressOption = 2,
    connect_timeout: sa.ConnectTimeoutOption = 3.0,
    handshake_timeout: sa.HandshakeTimeoutOption = 5.0,
    deadline: sa.DeadlineOption = 10.0,
    db: DbOption = None,
    broker: BrokerOption = None,
    ingest_queue: IngestQueueOption = "certscan.ingest",
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> int:
    """Plan a sweep, record it in the inventory and queue one task per shard for the agents of
    a zone. Prints the scan id."""
    from scanner.plan import shards as shards_mod
    from scanner.zones import app as zapp
    from scanner.zones.dispatch import DispatchOptions
    from scanner.zones.dispatch import dispatch as run_dispatch

    zapp.zone_queue(zone)  # a bad zone is a usage error before any work
    queue = zapp.check_queue(ingest_queue)
    url = zapp.broker_url(broker)
    inventory_url = db_url(db)
    sweep = sa.sweep_options(ctx.params, db_url=inventory_url, db_label=inventory_url)
    if seed is not None and not 0 <= seed <= shards_mod.MAX_SEED:
        raise UsageError(f"--seed must be between 0 and {shards_mod.MAX_SEED}")
    done = run_dispatch(
        DispatchOptions(
            sweep=sweep,
            zone=zone,
            addresses_per_shard=shards_mod.parse_shard_size(shard_size),
            seed=seed,
            broker=url,
            ingest_queue=queue,
        )
    )
    for note in done.notes:
        sys.stderr.write(f"note: {safe(note, 300)}\n")
    if json_out:
        sys.stdout.write(json_line(done.to_json()) + "\n")
    else:
        sys.stdout.write(f"{done.scan_id}\n")
        sys.stderr.write(
            f"scan {done.scan_id}: {done.targets} targets in {done.shards} shards queued on "
            f"{done.queue} ({zapp.safe_url(url)})\n"
        )
    return 0


def agent(
    zone: ZoneOption,
    broker: BrokerOption = None,
    concurrency: ConcurrencyOption = 1,
    time_limit: Annotated[
        float,
        typer.Option(
            "--time-limit",
            metavar="SECONDS",
            help="Hard time limit of one shard task; keep it below RabbitMQ's consumer_timeout "
            "(30 minutes by default). The sweep stops itself a little before.",
        ),
    ] = 1500.0,
    allow: Annotated[
        list[str] | None,
        typer.Option(
            "--allow",
            metavar="CIDR",
            help="A network this agent may scan (repeatable). Every target of a task is checked; "
            "a task with one outside is refused. Default: the local ranges (10/8, 172.16/12, "
            "192.168/16, 100.64/10, 127/8, link-local, ULA).",
        ),
    ] = None,
    allow_public: Annotated[
        bool,
        typer.Option(
            "--allow-public", help="Accept tasks that scan public addresses (inside --allow)."
        ),
    ] = False,
    max_concurrency: Annotated[
        int | None,
        typer.Option("--max-concurrency", metavar="N", help="Most connections a task may use."),
    ] = None,
    max_rate: Annotated[
        float | None,
        typer.Option("--max-rate", metavar="PER_SECOND", help="Fastest rate a task may ask for."),
    ] = None,
) -> int:
    """Run a zone agent: a Celery worker that sweeps the zone's shard tasks and sends the
    results to the ingest queue. It needs no database, and does only what its own policy
    (--allow, --allow-public, --max-*) permits, whatever a task asks."""
    from scanner.zones import app as zapp
    from scanner.zones.agent import run_agent
    from scanner.zones.policy import make_policy

    zapp.zone_queue(zone)
    if not 1 <= concurrency <= 256:
        raise UsageError("--concurrency must be between 1 and 256")
    policy = make_policy(
        allow or [],
        allow_public=allow_public,
        max_concurrency=max_concurrency,
        max_rate=max_rate,
    )
    run_agent(
        zone,
        zapp.broker_url(broker),
        concurrency=concurrency,
        time_limit=sa.positive("--time-limit", time_limit),
        policy=policy,
    )
    return 0


def ingest(
    db: DbOption = None,
    broker: BrokerOption = None,
    queue: IngestQueueOption = "certscan.ingest",
    concurrency: ConcurrencyOption = 1,
) -> int:
    """Run the ingest worker: store the agents' results in the inventory, idempotently, and
    close each scan (recording its findings) when its last shard settles."""
    from scanner.zones import app as zapp
    from scanner.zones.ingest import run_ingest

    name = zapp.check_queue(queue)
    if not 1 <= concurrency <= 64:
        raise UsageError("--concurrency must be between 1 and 64")
    run_ingest(db_url(db), zapp.broker_url(broker), queue=name, concurrency=concurrency)
    return 0
