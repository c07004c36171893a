"""What a zone agent agrees to do, whatever a shard task asks (``certscan agent --allow``).

A task comes through a broker that other zones, and a compromised dispatcher, can write to, so
the agent checks it against its own policy before any packet leaves:

* every address of the rebuilt plan lies inside one of the agent's ``--allow`` networks (by
  default: the local ranges a sweep scans without ``--allow-public``); the check runs over the
  plan's address intervals, so it covers every target without enumerating them;
* a task that asks for public addresses needs the agent's own ``--allow-public``;
* engine limits are clamped to the agent's maxima (:data:`MAXIMA`, or ``--max-concurrency`` and
  ``--max-rate``); timeouts to at most a minute;
* discovery names must be hostnames, and their number is capped.

Pure: no I/O. :class:`PolicyError` says what was refused, on one line.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from scanner.engine.discovery import MAX_NAMES, SOURCES, DiscoveryOptions
from scanner.errors import UsageError
from scanner.models import EngineLimits
from scanner.plan.targets import TargetPlan, first_outside, hostname

#: The largest engine limits an agent accepts from a task (what one sweep process can use).
MAXIMA = EngineLimits(
    concurrency=16384,
    handshakes=4096,
    rate=100_000.0,
    per_address=64,
    connect_timeout=60.0,
    handshake_timeout=60.0,
    target_deadline=120.0,
    max_chain_bytes=1024 * 1024,
)
#: The agent's networks when ``--allow`` is not given: what a sweep scans without
#: ``--allow-public``.
LOCAL_NETWORKS = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "::1/128",
    "fe80::/10",
    "fc00::/7",
)


#: Names one task may ask an agent to try on every address (``--sni-file``).
MAX_DISCOVERY_NAMES = 65536


class PolicyError(ValueError):
    """A shard task asks for something this agent's policy refuses."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentPolicy:
    """The agent's own bounds (``certscan agent`` options)."""

    allow: tuple[str, ...] = LOCAL_NETWORKS  # networks, canonical text
    allow_public: bool = False
    max_concurrency: int = MAXIMA.concurrency
    max_rate: float | None = None  # None: MAXIMA.rate


def make_policy(
    allow: Sequence[str],
    *,
    allow_public: bool,
    max_concurrency: int | None = None,
    max_rate: float | None = None,
) -> AgentPolicy:
    """The policy from the command line; UsageError naming a bad ``--allow`` network."""
    networks: list[str] = []
    for entry in allow:
        try:
            networks.append(str(ipaddress.ip_network(entry.strip(), strict=False)))
        except ValueError:
            raise UsageError(
                f"bad --allow {entry[:80]!r}: give a network such as 10.2.0.0/16"
            ) from None
    if max_concurrency is not None and not 1 <= max_concurrency <= MAXIMA.concurrency:
        raise UsageError(f"--max-concurrency must be between 1 and {MAXIMA.concurrency}")
    if max_rate is not None and not 0 < max_rate <= (MAXIMA.rate or 0):
        raise UsageError(f"--max-rate must be above 0 and at most {MAXIMA.rate:g}")
    return AgentPolicy(
        allow=tuple(networks) or LOCAL_NETWORKS,
        allow_public=allow_public,
        max_concurrency=max_concurrency or MAXIMA.concurrency,
        max_rate=max_rate,
    )


def check_plan(policy: AgentPolicy, plan: TargetPlan) -> None:
    """Refuse a plan with an address outside the policy."""
    if not policy.allow_public:
        public = first_outside(plan, LOCAL_NETWORKS)
        if public is not None:
            raise PolicyError(
                f"target {public} is a public address; this agent runs without --allow-public"
            )
    outside = first_outside(plan, policy.allow)
    if outside is not None:
        raise PolicyError(f"target {outside} is outside this agent's --allow networks")


def clamp_limits(policy: AgentPolicy, limits: EngineLimits) -> EngineLimits:
    """``limits`` no larger than the agent's maxima."""
    top_rate = policy.max_rate if policy.max_rate is not None else MAXIMA.rate
    rate = limits.rate
    if top_rate is not None:
        rate = top_rate if rate is None else min(rate, top_rate)
    return dataclasses.replace(
        limits,
        concurrency=min(limits.concurrency, policy.max_concurrency),
        handshakes=min(limits.handshakes, MAXIMA.handshakes),
        rate=rate,
        per_address=min(limits.per_address, MAXIMA.per_address),
        connect_timeout=min(limits.connect_timeout, MAXIMA.connect_timeout),
        handshake_timeout=min(limits.handshake_timeout, MAXIMA.handshake_timeout),
        target_deadline=min(limits.target_deadline, MAXIMA.target_deadline),
        max_chain_bytes=min(limits.max_chain_bytes, MAXIMA.max_chain_bytes),
    )


def check_discovery(options: DiscoveryOptions | None) -> DiscoveryOptions | None:
    """Discovery options whose names are all hostnames and whose counts are capped."""
    if options is None:
        return None
    for name in options.names:
        if hostname(name) != name:
            raise PolicyError(f"discovery name {name[:80]!r} is not a hostname")
    if len(options.names) > MAX_DISCOVERY_NAMES:
        raise PolicyError(f"more than {MAX_DISCOVERY_NAMES} discovery names")
    unknown = options.sources - set(SOURCES)
    if unknown:
        raise PolicyError(f"unknown discovery source {sorted(unknown)[0][:20]!r}")
    return dataclasses.replace(options, max_names=min(options.max_names, MAX_NAMES))
