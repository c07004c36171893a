"""What ingest keeps of an agent's batch: only what the shard's plan could have produced.

An agent may be compromised, so a batch is checked against the shard's plan, which ingest
rebuilds from the scan's stored shard task (the same pure :func:`build_plan` the agent ran):

* an outcome at shard position ``i`` must be exactly the plan's target ``i`` (address, port,
  SNI, protocol);
* a follow-up (position ``-1``, an endpoint SNI discovery found) must share address and port
  with a target of the shard and send a valid hostname as SNI;
* the observation time is the agent's ``started_at`` clamped into
  ``[attempt start - SKEW, now]``: a batch dated 9999 cannot become an endpoint's "latest" for
  good (the attempt start itself is bounded by :mod:`scanner.inventory.zone`).

Everything else is dropped and counted. Pure: the plan and the clock are passed in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from scanner.engine.crew import FOLLOW_UP
from scanner.models import Outcome
from scanner.plan.shards import ShardedPlan
from scanner.plan.targets import hostname

SKEW = timedelta(minutes=10)
#: Targets of a shard ingest will index by address and port to check follow-ups.
MAX_INDEXED = 1 << 21


@dataclass(frozen=True, slots=True, kw_only=True)
class Vetted:
    """The outcomes kept (observation time clamped), their positions, and what was dropped."""

    outcomes: tuple[Outcome, ...]
    indices: tuple[int, ...]
    rejected: int
    problem: str | None  # why the first dropped one was


def endpoints_of(plan: ShardedPlan) -> frozenset[tuple[str, int]] | None:
    """Every ``(address, port)`` of the shard, or None when it is too large to index."""
    if plan.count > MAX_INDEXED:
        return None
    return frozenset((t.address, t.port) for _, t in plan.iter_from(0))


def vet(
    outcomes: Sequence[Outcome],
    indices: Sequence[int],
    plan: ShardedPlan,
    endpoints: Callable[[], frozenset[tuple[str, int]] | None],
    *,
    attempt_started_at: datetime,
    now: datetime,
) -> Vetted:
    """Keep the outcomes the plan allows (module docstring). ``endpoints`` is called at most
    once, for the first follow-up."""
    earliest = attempt_started_at - SKEW
    kept: list[Outcome] = []
    kept_indices: list[int] = []
    problems: list[str] = []
    known: frozenset[tuple[str, int]] | None = None
    looked = False
    for outcome, index in zip(outcomes, indices, strict=True):
        target = outcome.target
        if index == FOLLOW_UP:
            if not looked:
                known, looked = endpoints(), True
            if known is None or (target.address, target.port) not in known:
                problems.append(f"follow-up {target.address}:{target.port} is not in the shard")
                continue
            if target.sni is None or hostname(target.sni) != target.sni:
                problems.append("follow-up SNI is not a hostname")
                continue
        elif not 0 <= index < plan.count:
            problems.append(f"position {index} is outside the shard (0..{plan.count - 1})")
            continue
        elif plan.at(index) != target:
            problems.append(f"position {index} is not the planned target")
            continue
        started = min(max(outcome.started_at, earliest), now)
        if started != outcome.started_at:
            outcome = dataclasses.replace(outcome, started_at=started)
        kept.append(outcome)
        kept_indices.append(index)
    return Vetted(
        outcomes=tuple(kept),
        indices=tuple(kept_indices),
        rejected=len(problems),
        problem=problems[0] if problems else None,
    )
