"""``certscan scans retry``: send a dispatched scan's failed or stuck shards out again.

The scan's shard task template (stored at dispatch, ``scanner.inventory.plans``) is sent again
for each chosen shard on its zone's queue, after the shards are put back to ``queued`` (their
old attempts lose the shard: a later attempt takes it over, and the scan is ``running`` again).
The broker is checked before anything changes, so a broker that cannot be reached leaves the
scan as it was (exit 3).
"""

from __future__ import annotations

import dataclasses
import json

from scanner.errors import OperationalError, UsageError
from scanner.inventory.store import Inventory
from scanner.zones import app as zapp
from scanner.zones.messages import ShardTask
from scanner.zones.wire import WireError


def retry_shards(inventory: Inventory, scan_id: int, shard: int | None, broker: str) -> list[int]:
    """Requeue and re-send; the shards sent. UsageError for a scan that was not dispatched."""
    run = inventory.scan(scan_id)
    if run is None:
        raise UsageError(f"no scan {scan_id} in the inventory (see certscan scans)")
    stored = inventory.plan(scan_id)
    if stored is None or stored[1] is None:
        raise UsageError(f"scan {scan_id} was not dispatched to a zone: nothing to retry")
    try:
        template = ShardTask.from_wire(json.loads(stored[1]))
    except (WireError, ValueError) as exc:
        raise UsageError(f"scan {scan_id}: its stored shard task is unreadable ({exc})") from None
    if shard is not None and not 0 <= shard < template.shards:
        raise UsageError(f"scan {scan_id} has no shard {shard} (0-{template.shards - 1})")
    zones = {s.shard: s.zone for s in inventory.shards(scan_id)}
    app = zapp.make_app(broker)
    zapp.check_broker(app)
    chosen = inventory.requeue_shards(scan_id, shard)
    try:
        with app.producer_or_acquire() as producer:
            for n in chosen:
                task = dataclasses.replace(template, shard=n)
                queue = zapp.zone_queue(zones.get(n) or "")
                zapp.publish(app, zapp.SHARD_TASK, task.to_wire(), queue, producer=producer)
    except Exception as exc:
        raise OperationalError(
            f"scan {scan_id}: cannot queue its shards on {zapp.safe_url(broker)}: {str(exc)[:200]}"
        ) from None
    return chosen
