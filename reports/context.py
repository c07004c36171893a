"""What the rules need beyond one observation, read from the inventory: each endpoint's leaf
history and previous chain (for the change and renewal rules), and the stored owners.

Edges of :mod:`reports.assess` (which re-exports them): a few bulk queries, then pure data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from reports.model import EndpointKey
from reports.owners import Owners
from scanner.inventory.store import EndpointRecord, Inventory, LeafRun
from scanner.models import CertInfo

__all__ = ["History", "read_history", "record_owners"]


def _key(record: EndpointRecord) -> EndpointKey:
    return (record.address, record.port, record.sni)


@dataclass(frozen=True, slots=True, kw_only=True)
class History:
    """What the change and renewal rules read beyond the previous SHA-256: each endpoint's leaf
    runs (oldest first) and, for an endpoint whose leaf changed, the previous chain."""

    runs: Mapping[EndpointKey, tuple[LeafRun, ...]] = field(default_factory=dict)
    previous_chains: Mapping[EndpointKey, tuple[CertInfo, ...]] = field(default_factory=dict)


def read_history(
    inventory: Inventory,
    records: Sequence[EndpointRecord],
    previous: Mapping[EndpointKey, str],
    *,
    scan_id: int | None = None,
) -> History:
    """The leaf runs up to each reference observation, and the previous chain of every one of
    ``records`` whose leaf changed (two bulk queries; the chains only for changed endpoints)."""
    ids = [r.endpoint_id for r in records if r.endpoint_id is not None]
    # The runs of these records' endpoints (an id range: a batch costs a batch, not the
    # inventory); every endpoint's when a record does not know its id.
    span = (min(ids) - 1, max(ids)) if ids and len(ids) == len(records) else None
    runs = inventory.leaf_runs(scan_id, endpoint_range=span)
    wanted: dict[int, EndpointKey] = {}
    for record in records:
        key = _key(record)
        mine = runs.get(key, ())
        leaf = record.leaf
        if leaf is None or len(mine) < 2 or key not in previous:
            continue
        if mine[-1].leaf.sha256 == leaf.sha256 and mine[-2].leaf.sha256 == previous[key]:
            wanted[mine[-2].observation_id] = key
    chains = inventory.chains(wanted) if wanted else {}
    return History(
        runs=runs,
        previous_chains={key: chains[obs] for obs, key in wanted.items() if obs in chains},
    )


def record_owners(inventory: Inventory, owners: Owners, *, now: datetime) -> int:
    """Assign every endpoint of the inventory by the current ``[owners]`` rules and store the
    result (:meth:`~scanner.inventory.store.Inventory.record_owners`); returns how many
    assignments changed. A config edit takes effect here, without a rescan."""
    endpoints = inventory.latest_endpoints(include_failures=True)
    assignments = {_key(r): owners.assign(r.address, r.port, r.sni) for r in endpoints}
    return inventory.record_owners(assignments, now=now)
