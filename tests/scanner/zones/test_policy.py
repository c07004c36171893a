"""The agent's own policy and ingest's check of a batch against the plan (pure, no broker)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from scanner.engine.discovery import DiscoveryOptions
from scanner.errors import UsageError
from scanner.models import EngineLimits, FailureKind, ScanFailure, Target
from scanner.plan.shards import ShardedPlan, ShardSpec
from scanner.zones.messages import PlanInputs
from scanner.zones.policy import (
    MAXIMA,
    AgentPolicy,
    PolicyError,
    check_discovery,
    check_plan,
    clamp_limits,
    make_policy,
)
from scanner.zones.vet import endpoints_of, vet

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def plan(*specs: str, allow_public: bool = False) -> PlanInputs:
    return PlanInputs(specs=specs, ports=(443,), allow_public=allow_public)


@pytest.mark.parametrize(
    ("allow", "specs", "refused"),
    [
        ((), ("10.1.0.0/24", "127.0.0.1"), None),
        (("10.1.0.0/16",), ("10.1.0.0/24",), None),
        (("10.1.0.0/16",), ("10.1.0.0/24", "10.2.0.7"), "10.2.0.7"),
        (("10.1.0.0/25",), ("10.1.0.0/24",), "10.1.0.128"),
        (("fd00::/64",), ("fd00::1", "fd01::1"), "fd01::1"),
    ],
)
def test_every_address_is_checked_against_allow(
    allow: tuple[str, ...], specs: tuple[str, ...], refused: str | None
) -> None:
    policy = make_policy(allow, allow_public=False)
    built = plan(*specs).build()
    if refused is None:
        check_plan(policy, built)
        return
    with pytest.raises(PolicyError, match=f"target {refused} is outside"):
        check_plan(policy, built)


def test_public_addresses_need_the_agents_own_allow_public() -> None:
    built = plan("8.8.8.0/30", "10.0.0.1", allow_public=True).build()
    with pytest.raises(PolicyError, match=r"8\.8\.8\.0 is a public address; .* --allow-public"):
        check_plan(make_policy(["0.0.0.0/0"], allow_public=False), built)
    check_plan(make_policy(["0.0.0.0/0"], allow_public=True), built)
    with pytest.raises(PolicyError, match="outside"):  # public, but not in the default networks
        check_plan(AgentPolicy(allow_public=True), built)


def test_limits_are_clamped_to_the_agents_maxima() -> None:
    asked = EngineLimits(
        concurrency=2**39, handshakes=2**39, rate=1e12, per_address=2**30,
        connect_timeout=1e9, handshake_timeout=1e9, target_deadline=1e9, max_chain_bytes=2**39,
    )  # fmt: skip
    got = clamp_limits(make_policy([], allow_public=False, max_concurrency=100), asked)
    assert (got.concurrency, got.handshakes, got.per_address) == (100, 4096, 64)
    assert (got.rate, got.connect_timeout, got.target_deadline) == (MAXIMA.rate, 60.0, 120.0)
    assert got.max_chain_bytes == MAXIMA.max_chain_bytes
    slow = clamp_limits(make_policy([], allow_public=False, max_rate=5), EngineLimits())
    assert slow.rate == 5
    assert clamp_limits(AgentPolicy(), EngineLimits()) == dataclasses.replace(
        EngineLimits(), rate=MAXIMA.rate
    )


def test_bad_policy_options_and_discovery_names() -> None:
    with pytest.raises(UsageError, match="bad --allow 'ten'"):
        make_policy(["ten"], allow_public=False)
    with pytest.raises(UsageError, match="--max-concurrency"):
        make_policy([], allow_public=False, max_concurrency=0)
    good = DiscoveryOptions(sources=frozenset({"san"}), names=("a.example",), max_names=10**6)
    checked = check_discovery(good)
    assert checked is not None
    assert checked.max_names == 16
    for bad in (("x\n<b>",), ("*.example",), ("A.EXAMPLE",)):
        with pytest.raises(PolicyError, match="not a hostname"):
            check_discovery(DiscoveryOptions(names=bad))
    with pytest.raises(PolicyError, match="unknown discovery source"):
        check_discovery(DiscoveryOptions(sources=frozenset({"zonefile"})))


def failure(target: Target, at: datetime = NOW) -> ScanFailure:
    return ScanFailure(target=target, started_at=at, kind=FailureKind.REFUSED, detail="")


def test_vet_keeps_planned_targets_and_clamps_their_time() -> None:
    shard = ShardedPlan(plan("127.0.0.0/29").build(), ShardSpec(5, 2, 1))
    first, second = shard.at(0), shard.at(1)
    calls = []

    def endpoints() -> frozenset[tuple[str, int]] | None:
        calls.append(1)
        return endpoints_of(shard)

    outside = Target(address="127.0.0.99", port=443)
    follow = dataclasses.replace(first, sni="www.example")
    hostile = dataclasses.replace(first, sni="x\n<script>")
    other_shard = next(t for t in plan("127.0.0.0/29").build() if t not in list(shard))
    got = vet(
        [
            failure(first, datetime(9999, 1, 1, tzinfo=UTC)),
            failure(second, NOW - timedelta(days=400)),
            failure(outside),
            failure(dataclasses.replace(second, port=444)),
            failure(follow),
            failure(hostile),
            failure(dataclasses.replace(other_shard, sni="www.example")),
            failure(first),
        ],
        [0, 1, 2, 3, -1, -1, -1, 99],
        shard,
        endpoints,
        attempt_started_at=NOW - timedelta(minutes=1),
        now=NOW,
    )
    assert [o.target for o in got.outcomes] == [first, second, follow]
    assert got.indices == (0, 1, -1)
    assert [o.started_at for o in got.outcomes] == [
        NOW,
        NOW - timedelta(minutes=11),
        NOW,
    ]
    assert got.rejected == 5
    assert got.problem == "position 2 is not the planned target"
    assert calls == [1]  # the shard is indexed once, for the first follow-up
