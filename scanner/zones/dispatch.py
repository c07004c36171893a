"""``certscan dispatch``: plan once, record a sharded scan, queue one task per shard.

Order matters for failure: the plan is built (usage errors, exit 2) and the broker checked
(exit 3) before anything is written, so a mistake leaves no scan behind. Then the scan and its
shard rows (``queued``, with the zone) are recorded, and the shard tasks published with
confirms on one connection. If publishing fails part-way, the scan is closed ``failed`` (its
queued tasks, if any ran, change nothing that matters) and the error is reported.

Hostnames are resolved here, once: the resolved addresses travel in every task's plan inputs,
so each agent rebuilds exactly this plan whatever its own DNS says (an agent in a zone often
cannot resolve, or resolves differently).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

import trio

from scanner.errors import OperationalError, TargetError
from scanner.inventory.store import Inventory
from scanner.plan.digest import plan_digest
from scanner.plan.shards import MAX_SEED, ShardSpec, address_count, shard_size, split_count
from scanner.sweep.modes import DiscoverOptions
from scanner.sweep.options import SweepOptions, starttls_default, sweep_spec
from scanner.sweep.pipeline import scan_spec
from scanner.sweep.run import resolve_hostnames
from scanner.zones import app as zapp
from scanner.zones.messages import PlanInputs, ShardTask

#: Shards one dispatch may create.
MAX_SHARDS = 100_000


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchOptions:
    sweep: SweepOptions  # what to scan and how (its db_url is the inventory)
    zone: str
    addresses_per_shard: int
    seed: int | None
    broker: str
    ingest_queue: str = zapp.INGEST_QUEUE


@dataclass(frozen=True, slots=True, kw_only=True)
class Dispatched:
    scan_id: int
    zone: str
    queue: str
    shards: int
    targets: int
    seed: int
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "scan_id": self.scan_id,
            "zone": self.zone,
            "queue": self.queue,
            "shards": self.shards,
            "targets": self.targets,
            "seed": self.seed,
        }


async def plan_inputs(options: SweepOptions) -> tuple[PlanInputs, dict[str, str]]:
    """Resolve the hostnames among the targets (once) and return the plan's inputs, and the
    names that did not resolve with why."""
    resolved, failures = await resolve_hostnames(options)
    inputs = PlanInputs(
        specs=options.specs,
        ports=options.ports,
        excludes=options.excludes,
        blocklist=options.blocklist,
        resolved=tuple(sorted((name, tuple(addrs)) for name, addrs in resolved.items())),
        allow_public=options.allow_public,
        max_targets=options.max_targets,
        sni=options.sni,
        protocols=options.protocols,
        default_protocol=starttls_default(options.starttls),
    )
    return inputs, failures


def dispatch(options: DispatchOptions) -> Dispatched:
    """Plan, check the broker, record the scan and its shards, publish the shard tasks."""
    queue = zapp.zone_queue(options.zone)
    sweep = options.sweep
    inputs, failures = trio.run(plan_inputs, sweep)
    plan = inputs.build(failures)
    if plan.count == 0:
        raise TargetError("nothing to scan: every target was excluded or could not be resolved")
    seed = options.seed if options.seed is not None else secrets.randbelow(MAX_SEED + 1)
    shards = split_count(plan.count, options.addresses_per_shard, address_count(plan))
    if shards > MAX_SHARDS:
        raise TargetError(
            f"{shards:,} shards is more than {MAX_SHARDS:,}: give a larger --shard-size"
        )
    app = zapp.make_app(options.broker)
    zapp.check_broker(app)
    spec = scan_spec(
        **sweep_spec(sweep),
        zone=options.zone,
        seed=seed,
        shards=shards,
        shard_size=options.addresses_per_shard,
    )
    totals = [shard_size(plan.count, ShardSpec(seed, shards, i)) for i in range(shards)]
    inventory = Inventory(sweep.db_url)
    try:
        scan_id = inventory.start_scan(spec=spec, total=plan.count, shards=shards)
        inventory.add_shards(scan_id, totals, zone=options.zone)
        template = ShardTask(
            scan_id=scan_id,
            shard=0,
            shards=shards,
            seed=seed,
            total=plan.count,
            plan=inputs,
            limits=sweep.limits,
            discovery=sweep.discovery,
            ingest_queue=options.ingest_queue,
        )
        # Ingest checks what agents report against this; `scans retry` sends it again.
        inventory.save_plan(scan_id, plan_digest(plan), json.dumps(template.to_wire()))
        tasks = (
            ShardTask(
                scan_id=scan_id,
                shard=i,
                shards=shards,
                seed=seed,
                total=plan.count,
                plan=inputs,
                limits=sweep.limits,
                discovery=sweep.discovery,
                ingest_queue=options.ingest_queue,
                # Sent only when it differs from the default: agents older than --discover
                # accept the task, and decide `auto` with their own privilege either way.
                discover=None if sweep.discover == DiscoverOptions() else sweep.discover,
            )
            for i in range(shards)
        )
        try:
            with app.producer_or_acquire() as producer:
                for task in tasks:
                    zapp.publish(app, zapp.SHARD_TASK, task.to_wire(), queue, producer=producer)
        except Exception as exc:
            inventory.finish_scan(scan_id, "failed")
            url = zapp.safe_url(options.broker)
            raise OperationalError(
                f"scan {scan_id}: cannot queue its shards on {url}: {str(exc)[:200]}"
            ) from None
    finally:
        inventory.close()
    return Dispatched(
        scan_id=scan_id,
        zone=options.zone,
        queue=queue,
        shards=shards,
        targets=plan.count,
        seed=seed,
        notes=plan.notes,
    )
