"""JSON views of inventory records (scans and shards), shared by ``certscan scans --json`` and
the HTTP API so that both speak one shape: one name per idea, times in ISO 8601 UTC. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from datetime import datetime
from typing import Any

from scanner.inventory.read import ScanRun
from scanner.inventory.shards import SHARD_STATUSES, ShardRecord
from scanner.serialize import iso

__all__ = ["scan_dict", "shard_dict", "shard_states"]

_SHARD_FIELDS = tuple(f.name for f in fields(ShardRecord))


def shard_states(counts: Mapping[str, int] | None) -> dict[str, int]:
    """Shards per state, every state present (0 when none), in :data:`SHARD_STATUSES` order;
    a state certscan does not know yet is kept after them."""
    given = dict(counts or {})
    out = {state: int(given.pop(state, 0)) for state in SHARD_STATUSES}
    return out | {state: int(n) for state, n in sorted(given.items())}


def scan_dict(run: ScanRun, counts: Mapping[str, int] | None = None) -> dict[str, Any]:
    """A scan as JSON: ``shards`` is None for a scan that is not sharded; ``shard_states`` is
    then None too, else its shards per state (``counts`` from ``Inventory.shard_counts``)."""
    return {
        "id": run.id,
        "status": run.status,
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "total": run.total,
        "done": run.done,
        "ok": run.ok,
        "failed": run.failed,
        "version": run.version,
        "shards": run.shards,
        "shard_states": None if run.shards is None else shard_states(counts),
    }


def shard_dict(record: ShardRecord) -> dict[str, Any]:
    """A shard as JSON: every ``scan_shard`` column, times in ISO 8601 UTC."""
    out: dict[str, Any] = {}
    for name in _SHARD_FIELDS:
        value = getattr(record, name)
        out[name] = iso(value) if isinstance(value, datetime) else value
    return out
