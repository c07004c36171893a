"""Many targets at once: limits, pacing, cancellation and the internal-error guard."""

from __future__ import annotations

import math
import resource
from collections.abc import Callable, Iterable, Iterator
from contextlib import AsyncExitStack
from itertools import count, pairwise

import pytest
import trio
import trio.testing

from scanner.engine import crew as engine
from scanner.errors import UsageError
from scanner.models import EngineLimits, FailureKind, Handshake, Outcome, ScanFailure, Target
from tests import peers

_addresses = count(1)


def fresh_address() -> str:
    n = next(_addresses)
    return f"127.92.{n // 250}.{n % 250 + 1}"


@pytest.fixture(scope="module")
def pki() -> peers.Pki:
    return peers.make_pki()


async def collect(
    targets: Iterable[Target], limits: EngineLimits, **options: engine.InternalErrors
) -> dict[int, Outcome]:
    """Run a sweep to the end and return outcomes by index (asserting each index comes once)."""
    send, receive = trio.open_memory_channel[tuple[int, Outcome]](0)
    found: dict[int, Outcome] = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: engine.sweep(enumerate(targets), limits, send, **options))
        async with receive:
            async for index, outcome in receive:
                assert index not in found
                found[index] = outcome
    return found


# --- limits on descriptors ------------------------------------------------------------------


def test_raise_open_files_limit_reaches_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        if soft == hard and hard > 64:
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        new = engine.raise_open_files_limit()
        assert new == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert new == hard or hard == resource.RLIM_INFINITY
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize(
    ("requested", "nofile", "expected"),
    [
        (500, 1024, 500),
        (2000, 1024, 896),  # an eighth kept back
        (100, 64, 32),  # at least 32 kept back
        (100_000, 1_048_576, 100_000),
        (2_000_000, 1_048_576, 1_048_320),  # at most 256 kept back
        (10, 20, 1),  # never zero
        (0, 1024, 1),
    ],
)
def test_effective_concurrency(requested: int, nofile: int, expected: int) -> None:
    assert engine.effective_concurrency(requested, nofile) == expected


# --- sweeping -------------------------------------------------------------------------------


async def test_every_target_gets_exactly_one_outcome(pki: peers.Pki) -> None:
    ctx = peers.server_context(pki.served)
    async with AsyncExitStack() as stack:
        healthy = [
            await stack.enter_async_context(peers.serve(fresh_address(), peers.tls_server(ctx)))
            for _ in range(3)
        ]
        closed = stack.enter_context(peers.closed_port(fresh_address()))
        targets = [peer.target("localhost") for peer in healthy] * 10 + [closed] * 5
        found = await collect(targets, EngineLimits(concurrency=8), internal_errors="raise")
    assert sorted(found) == list(range(len(targets)))
    for index, outcome in found.items():
        assert outcome.target == targets[index]
        if targets[index] == closed:
            assert isinstance(outcome, ScanFailure)
            assert outcome.kind is FailureKind.REFUSED
        else:
            assert isinstance(outcome, Handshake)
            assert outcome.chain == (pki.leaf.der, pki.intermediate.der)


async def test_global_concurrency_is_never_exceeded(pki: peers.Pki) -> None:
    ctx = peers.server_context(pki.served)
    tally = peers.Tally()
    handler = peers.tls_server(ctx, delay=0.05, tally=tally)
    async with AsyncExitStack() as stack:
        servers = [
            await stack.enter_async_context(peers.serve(fresh_address(), handler, tally=tally))
            for _ in range(4)
        ]
        targets = [server.target() for server in servers] * 5
        limits = EngineLimits(concurrency=3, per_address=10)
        found = await collect(targets, limits, internal_errors="raise")
    assert all(isinstance(o, Handshake) for o in found.values())
    assert tally.accepted == len(targets)
    assert tally.busy_peak == 3  # the limit is reached, and never passed


async def test_connections_per_address_are_capped(pki: peers.Pki) -> None:
    ctx = peers.server_context(pki.served)
    busy, other = peers.Tally(), peers.Tally()
    async with (
        peers.serve(
            fresh_address(), peers.tls_server(ctx, delay=0.05, tally=busy), tally=busy
        ) as crowded,
        peers.serve(
            fresh_address(), peers.tls_server(ctx, delay=0.05, tally=other), tally=other
        ) as spare,
    ):
        targets = [crowded.target()] * 8 + [spare.target()] * 4
        limits = EngineLimits(concurrency=10, per_address=2)
        found = await collect(targets, limits, internal_errors="raise")
    assert all(isinstance(o, Handshake) for o in found.values())
    assert busy.busy_peak == 2
    assert other.busy_peak == 2


async def test_per_address_gates_are_dropped_when_idle() -> None:
    send, receive = trio.open_memory_channel[tuple[int, Outcome]](100)
    with peers.closed_port(fresh_address()) as a, peers.closed_port(fresh_address()) as b:
        async with trio.open_nursery() as nursery:
            crew = engine._Crew(nursery, enumerate([a, b, a, b]), EngineLimits(), send, "raise")
            crew.grow(2)
        send.close()
    assert crew.gates == {}
    assert receive.statistics().current_buffer_used == 4


async def test_rate_paces_new_connections_in_real_time() -> None:
    with peers.closed_port(fresh_address()) as target:
        start = trio.current_time()
        found = await collect([target] * 11, EngineLimits(rate=40.0), internal_errors="raise")
        elapsed = trio.current_time() - start
    assert len(found) == 11
    assert 0.25 - 0.01 <= elapsed < 0.6  # ten intervals of 25 ms


async def _feed_times(items: int, rate: float, busy: Callable[[int], float]) -> list[float]:
    """When each turn was granted (virtual time) to one worker that spends ``busy(i)`` s on
    item ``i`` before asking for the next."""
    pacer = engine._Pacer(rate)
    times: list[float] = []
    for index in range(items):
        await pacer.turn()
        times.append(trio.current_time())
        await trio.sleep(busy(index))
    return [t - times[0] for t in times]


async def test_pacing_follows_a_fixed_schedule(autojump_clock: trio.testing.MockClock) -> None:
    # The consumer is quicker than the 100 ms interval except once, when it takes 130 ms:
    # that one item leaves 30 ms late, and the next is back on the original schedule.
    offsets = await _feed_times(50, rate=10.0, busy=lambda i: 0.13 if i == 5 else 0.07)
    expected = [i / 10 for i in range(50)]
    expected[6] = 0.63
    assert offsets == pytest.approx(expected, abs=1e-9)  # no drift


async def test_pacing_makes_up_little_after_a_stall(
    autojump_clock: trio.testing.MockClock,
) -> None:
    offsets = await _feed_times(30, rate=100.0, busy=lambda i: 1.0 if i == 9 else 0.0)
    gaps = [b - a for a, b in pairwise(offsets)]
    assert gaps[9] == pytest.approx(1.0, abs=1e-6)  # the stall
    burst = [g for g in gaps[10:] if g < 0.005]
    assert len(burst) == int(engine._CATCH_UP * 100)  # 50 ms of slots made up at once, no more
    assert gaps[-1] == pytest.approx(0.01, abs=1e-9)  # then back on the 10 ms schedule


async def test_targets_are_pulled_lazily() -> None:
    pulled = 0
    async with peers.serve(fresh_address(), peers.silent) as quiet:

        def targets() -> Iterator[tuple[int, Target]]:
            nonlocal pulled
            for i in range(1_000_000):
                pulled += 1
                yield i, quiet.target()

        send, receive = trio.open_memory_channel[tuple[int, Outcome]](10)
        limits = EngineLimits(concurrency=3, per_address=3, handshake_timeout=30)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(engine.sweep, targets(), limits, send)
            await quiet.tally.wait_for(lambda t: t.open >= 3)
            await trio.testing.wait_all_tasks_blocked()
            assert pulled == 3  # one target per busy worker, nothing read ahead
            nursery.cancel_scope.cancel()
        async with receive:
            pass


async def test_workers_grow_only_while_connects_wait() -> None:
    # Refusals complete at once on loopback: the crew stays at its first size.
    send, receive = trio.open_memory_channel[tuple[int, Outcome]](math.inf)
    with peers.closed_port(fresh_address()) as closed:
        async with trio.open_nursery() as nursery:
            crew = engine._Crew(
                nursery, enumerate([closed] * 500), EngineLimits(concurrency=400), send, "raise"
            )
            crew.grow(engine._FIRST_WORKERS)
        send.close()
    assert crew.workers == engine._FIRST_WORKERS
    assert receive.statistics().current_buffer_used == 500


async def test_workers_grow_to_the_limit_when_connects_hang() -> None:
    # Dropped SYNs: every connect waits, so the crew grows until all targets are in flight.
    send, receive = trio.open_memory_channel[tuple[int, Outcome]](math.inf)
    with peers.full_backlog(fresh_address()) as dead:
        limits = EngineLimits(concurrency=150, per_address=1000, connect_timeout=0.5)
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            crew = engine._Crew(nursery, enumerate([dead] * 300), limits, send, "raise")
            crew.grow(engine._FIRST_WORKERS)
        send.close()
        elapsed = trio.current_time() - start
    assert crew.workers == 150
    assert receive.statistics().current_buffer_used == 300
    assert elapsed < 1.5  # two rounds of 150 parallel 0.5 s timeouts, not 300/64 rounds


async def test_cancelling_a_sweep_closes_every_socket() -> None:
    tally = peers.Tally()
    async with peers.serve(fresh_address(), peers.silent, tally=tally) as peer:
        send, receive = trio.open_memory_channel[tuple[int, Outcome]](0)
        limits = EngineLimits(concurrency=6, per_address=6, handshake_timeout=60.0)
        targets = enumerate([peer.target()] * 20)
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(engine.sweep, targets, limits, send)
                await tally.wait_for(lambda t: t.open == 6)
                nursery.cancel_scope.cancel()
            await tally.wait_for(lambda t: t.open == 0)
        assert tally.accepted == 6
        with pytest.raises(trio.EndOfChannel):
            await receive.receive()  # the sweep closed its results channel on the way out


async def test_a_bug_is_recorded_in_production() -> None:
    with peers.closed_port(fresh_address()) as fine:
        broken = Target(address="not-an-address", port=443)
        found = await collect([fine, broken, fine], EngineLimits(concurrency=2))
    assert [found[i].status for i in range(3)] == ["refused", "internal_error", "refused"]
    failure = found[1]
    assert isinstance(failure, ScanFailure)
    assert failure.kind is FailureKind.INTERNAL_ERROR
    assert failure.detail.startswith("ValueError: not an IP address literal: 'not-an-address'")


async def test_a_bug_propagates_in_tests() -> None:
    broken = Target(address="not-an-address", port=443)
    with pytest.RaisesGroup(
        pytest.RaisesExc(ValueError, match="not an IP"), flatten_subgroups=True
    ):
        await collect([broken], EngineLimits(), internal_errors="raise")
    with pytest.raises(ValueError, match="not an IP"):
        await engine.probe(broken, EngineLimits())


async def test_a_bad_minimum_version_fails_before_any_connection() -> None:
    send, receive = trio.open_memory_channel[tuple[int, Outcome]](0)
    with peers.closed_port(fresh_address()) as target, pytest.raises(UsageError, match="SSLv3"):
        await engine.sweep([(0, target)], EngineLimits(tls_min_version="SSLv3"), send)
    with pytest.raises(trio.EndOfChannel):
        await receive.receive()
