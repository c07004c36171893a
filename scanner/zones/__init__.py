"""Distributed sweeps over network zones with Celery: one agent per zone, one central ingest.

Theory of operation
-------------------
``certscan dispatch`` (:mod:`scanner.zones.dispatch`) plans a sweep once -- hostnames are
resolved there and only there -- records a sharded scan in the inventory and publishes one
*shard task* per shard on the zone's queue ``certscan.zone.<zone>``. The task carries the plan's
inputs (never the targets), so it stays small however large the plan.

``certscan agent`` (:mod:`scanner.zones.agent`) runs in the zone with no database credentials.
For each shard task it rebuilds the same plan with :func:`scanner.plan.targets.build_plan` (a pure
function of the inputs, resolved names included), takes its shard
(:class:`scanner.plan.shards.ShardedPlan`), sweeps it with the trio engine and publishes what it saw
to the ingest queue: ``shard_started``, then numbered ``batch`` messages, then
``shard_finished`` -- all under one fresh *attempt* id.

``certscan ingest`` (:mod:`scanner.zones.ingest`) runs next to the database and stores each
message idempotently (the inventory keys batches by attempt and sequence number and endpoints by
scan), so any message may arrive twice, late or after another attempt took the shard over.
When every shard of a scan is final it records the scan's findings and closes it
(:mod:`scanner.zones.settle`: by state, from any message or a periodic check).

Agents are trusted less than ingest. An agent checks each task against its own policy
(:mod:`scanner.zones.policy`: ``--allow`` networks, ``--allow-public``, clamped limits); ingest
checks each outcome against the shard's plan, rebuilt from the shard task stored at dispatch
(:mod:`scanner.zones.vet`), and each message against the shard it names
(:mod:`scanner.inventory.zone`). ``certscan scans retry`` (:mod:`scanner.zones.retry`) sends
failed or stuck shards out again.

Delivery: tasks are acknowledged late (after the work), one at a time per worker process, and
requeued when the worker dies, so a killed agent's shard runs again elsewhere; Celery's hard
time limit stays under RabbitMQ's consumer timeout. Messages are JSON only
(:mod:`scanner.zones.messages`, :mod:`scanner.zones.wire`), versioned, bounded and validated on
arrival; a malformed one is logged on one line and dropped, never retried.

Celery is imported only here, inside this package: ``certscan sweep`` never pays for it.
"""
