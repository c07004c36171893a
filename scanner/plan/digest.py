"""A plan's fingerprint: SHA-256 over what it scans, names already resolved (pure).

Two plans with one digest number the same targets in the same order, so a scan's stored
positions (its watermark, its shards' positions) mean the same targets in both. ``--resume``
compares the digest stored with the scan to the plan built now: a name that resolves to other
addresses changes it, and the resume is refused rather than replayed against another plan.
"""

from __future__ import annotations

import hashlib

from scanner.plan.targets import TargetPlan


def plan_digest(plan: TargetPlan) -> str:
    """Hex SHA-256 of the plan's layout: every run's ports and SNI segments with their address
    intervals, and the protocols by port."""
    h = hashlib.sha256(b"certscan-plan-1\n")
    h.update(f"{plan.count}|{plan.default_protocol}|{plan.protocols!r}\n".encode())
    for run in plan.runs:
        h.update(f"run {run.ports!r}\n".encode())
        for seg in run.segments:
            h.update(f"seg {seg.sni!r} {seg.intervals!r}\n".encode())
    return h.hexdigest()
