"""``certscan dispatch``, ``agent`` and ``ingest``: distributed sweeps over network zones.

Option parsing only; the work is in :mod:`scanner.zones` (imported inside each command, so
celery costs nothing to the other commands). The broker is ``--broker``, else
``$CERTSCAN_BROKER``, else the local RabbitMQ; its password is never printed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from scanner import discovery, targets
from scanner.commands_report import DbOption
from scanner.console import safe
from scanner.errors import UsageError
from scanner.models import EngineLimits
from scanner.serialize import json_line
from scanner.store import db_url
from scanner.sweep_command import SweepOptions, join_specs, read_list_file, starttls_default

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


def _positive(name: str, value: float) -> float:
    if value <= 0:
        raise UsageError(f"{name} must be greater than 0 (got {value:g})")
    return value


def dispatch(
    zone: ZoneOption,
    target: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="TARGET",
            help="Addresses, CIDRs, ranges, hostnames, host:port (as for sweep).",
            show_default=False,
        ),
    ] = None,
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
    file: Annotated[
        list[Path] | None,
        typer.Option("-f", "--file", metavar="FILE", help="Read targets from FILE."),
    ] = None,
    ports: Annotated[
        str | None,
        typer.Option("-p", "--ports", metavar="PORTS", help="Ports, as for sweep."),
    ] = None,
    starttls: Annotated[
        str, typer.Option("--starttls", metavar="auto|off|PROTOCOL", help="As for sweep.")
    ] = "auto",
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", metavar="CIDR", help="Address, CIDR or range to skip."),
    ] = None,
    exclude_file: Annotated[
        list[Path] | None,
        typer.Option("--exclude-file", metavar="FILE", help="File of exclusions."),
    ] = None,
    blocklist: Annotated[
        Path | None,
        typer.Option("--blocklist", metavar="FILE", help="File of CIDRs never to scan."),
    ] = None,
    sni: Annotated[
        str | None,
        typer.Option("--sni", metavar="NAME", help="Server name to send to every IP target."),
    ] = None,
    sni_from: Annotated[
        list[str] | None,
        typer.Option("--sni-from", metavar="san|ptr", help="SNI discovery, as for sweep."),
    ] = None,
    sni_file: Annotated[
        Path | None,
        typer.Option("--sni-file", metavar="FILE", help="SNI discovery names, as for sweep."),
    ] = None,
    all_certs: Annotated[
        bool, typer.Option("--all-certs", help="Collect every certificate (as for sweep).")
    ] = False,
    resolve: Annotated[
        str,
        typer.Option("--resolve", metavar="all|first", help="Hostnames: all or first address."),
    ] = "all",
    allow_public: Annotated[
        bool, typer.Option("--allow-public", help="Allow globally routable addresses.")
    ] = False,
    max_targets: Annotated[
        int, typer.Option("--max-targets", metavar="N", help="Refuse plans larger than this.")
    ] = 2**24,
    concurrency: Annotated[
        int,
        typer.Option("--concurrency", metavar="N", help="Connections in flight per shard task."),
    ] = 4096,
    rate: Annotated[
        float | None,
        typer.Option("--rate", metavar="PER_SECOND", help="New connections per second per task."),
    ] = None,
    handshakes: Annotated[
        int, typer.Option("--handshakes", metavar="N", help="TLS handshakes in flight per task.")
    ] = 256,
    probe_protocols: Annotated[
        bool, typer.Option("--probe-protocols", help="Also try TLS 1.1 and 1.0.")
    ] = False,
    per_address: Annotated[
        int, typer.Option("--per-address", metavar="N", help="Connections to one address.")
    ] = 2,
    connect_timeout: Annotated[
        float, typer.Option("--connect-timeout", metavar="SECONDS", help="TCP connect timeout.")
    ] = 3.0,
    handshake_timeout: Annotated[
        float,
        typer.Option("--handshake-timeout", metavar="SECONDS", help="TLS handshake timeout."),
    ] = 5.0,
    deadline: Annotated[
        float,
        typer.Option("--deadline", metavar="SECONDS", help="Seconds one target may take in all."),
    ] = 10.0,
    db: DbOption = None,
    broker: BrokerOption = None,
    ingest_queue: IngestQueueOption = "certscan.ingest",
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> int:
    """Plan a sweep, record it in the inventory and queue one task per shard for the agents of
    a zone. Prints the scan id."""
    from scanner import shards as shards_mod
    from scanner.zones import app as zapp
    from scanner.zones.dispatch import DispatchOptions
    from scanner.zones.dispatch import dispatch as run_dispatch

    zapp.zone_queue(zone)  # a bad zone is a usage error before any work
    queue = zapp.check_queue(ingest_queue)
    url = zapp.broker_url(broker)
    specs = list(target or [])
    for path in file or []:
        specs += read_list_file(path)
    excludes = list(exclude or [])
    for path in exclude_file or []:
        excludes += read_list_file(path)
    if not specs:
        raise UsageError("no targets: give addresses, CIDRs or hostnames, or -f FILE")
    if resolve not in ("all", "first"):
        raise UsageError(f"--resolve must be 'all' or 'first' (got {safe(resolve)!r})")
    if seed is not None and not 0 <= seed <= shards_mod.MAX_SEED:
        raise UsageError(f"--seed must be between 0 and {shards_mod.MAX_SEED}")
    starttls_default(starttls)
    if min(concurrency, per_address, handshakes) < 1:
        raise UsageError("--concurrency, --handshakes and --per-address must be at least 1")
    limits = EngineLimits(
        concurrency=concurrency,
        handshakes=handshakes,
        probe_protocols=probe_protocols,
        all_certs=all_certs,
        rate=_positive("--rate", rate) if rate is not None else None,
        per_address=per_address,
        connect_timeout=_positive("--connect-timeout", connect_timeout),
        handshake_timeout=_positive("--handshake-timeout", handshake_timeout),
        target_deadline=_positive("--deadline", deadline),
    )
    port_specs = (
        targets.parse_port_specs(ports)
        if ports is not None
        else tuple((port, None) for port in targets.DEFAULT_PORTS)
    )
    inventory_url = db_url(db)
    sweep = SweepOptions(
        specs=join_specs(specs),
        ports=tuple(port for port, _ in port_specs),
        protocols=tuple((port, name) for port, name in port_specs if name is not None),
        starttls=starttls,
        excludes=tuple(excludes),
        blocklist=tuple(read_list_file(blocklist)) if blocklist else (),
        sni=sni,
        discovery=discovery.parse_options(
            sni_from or [], read_list_file(sni_file) if sni_file else []
        ),
        allow_public=allow_public,
        max_targets=max_targets,
        resolve_mode=resolve,
        limits=limits,
        db_url=inventory_url,
        db_label=inventory_url,
    )
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
) -> int:
    """Run a zone agent: a Celery worker that sweeps the zone's shard tasks and sends the
    results to the ingest queue. It needs no database."""
    from scanner.zones import app as zapp
    from scanner.zones.agent import run_agent

    zapp.zone_queue(zone)
    if not 1 <= concurrency <= 256:
        raise UsageError("--concurrency must be between 1 and 256")
    run_agent(
        zone,
        zapp.broker_url(broker),
        concurrency=concurrency,
        time_limit=_positive("--time-limit", time_limit),
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
