"""``--resume`` only against the plan a scan was started with.

A scan stores its plan's digest (:func:`scanner.plan.digest.plan_digest`) when it starts. A
resumed scan replays stored positions (the watermark, the targets stored above it), which mean
the same targets only in the same plan; when a hostname resolves to other addresses now, the
plan differs and those positions would silently skip or repeat targets. So the resume is
refused, with one line saying why. A scan from before digests were stored resumes as it did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scanner.errors import UsageError
from scanner.plan.digest import plan_digest
from scanner.plan.shards import Plan, ShardedPlan
from scanner.plan.targets import TargetPlan

if TYPE_CHECKING:
    from scanner.inventory.store import Inventory


def digest_of(plan: Plan) -> str:
    """The digest of the whole plan (a shard's too: its positions depend on the whole)."""
    base = plan.plan if isinstance(plan, ShardedPlan) else plan
    if not isinstance(base, TargetPlan):
        raise TypeError(f"not a plan: {type(base).__name__}")
    return plan_digest(base)


def check_resumable(inventory: Inventory, scan_id: int, digest: str) -> None:
    """UsageError when scan ``scan_id`` was planned differently; records the digest of a scan
    that has none yet."""
    stored = inventory.plan(scan_id)
    if stored is None:
        inventory.save_plan(scan_id, digest)
        return
    if stored[0] != digest:
        raise UsageError(
            f"scan {scan_id} cannot be resumed: its targets resolve to other addresses now "
            "(a name's DNS answer changed), so its stored positions would skip or repeat "
            "targets; run without --resume to start a new scan"
        )
