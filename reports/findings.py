"""The findings rules: what is wrong with one endpoint's observation, as pure data.

Theory of operation
-------------------
:func:`evaluate` takes one observation (:class:`EndpointInput`: the chain as presented, the
negotiated version and cipher), the :class:`~reports.policy.Policy`, a
:class:`~reports.trust.TrustStore`, the report's "now", and a :class:`Context` with what lies
outside the observation (the previous leaf, the endpoints sharing the leaf key, the protocol
probe). Each rule proposes findings with a computed severity; the policy then overrides the
severity of a kind if asked and drops disabled kinds. Nothing here does I/O, and the result
depends only on the arguments, so a report rendered twice from the same data is identical.

Certificates judged: the time rules (``expired``, ``expiring``, ``not_yet_valid``) apply to the
leaf and the presented intermediates on the path to the root; ``weak_key`` and ``weak_signature``
to every presented certificate (an extra certificate is still sent to every client);
``long_validity``, ``no_san``, ``hostname_mismatch``, ``key_reuse`` and ``certificate_changed`` to
the leaf. Trust findings come from :func:`reports.trust.evaluate_chain`.

The kinds, their default severities and the ``expiring`` rule for short-lived certificates are
tabled in :mod:`reports.rules`, which holds the rules themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from reports.model import Finding, Severity
from reports.policy import Policy
from reports.rules import LEGACY_VERSIONS, Rules, expiry_severity
from reports.trust import TrustStore
from scanner.models import CertInfo

__all__ = [
    "LEGACY_VERSIONS",
    "Context",
    "EndpointInput",
    "EndpointKey",
    "at_or_above",
    "evaluate",
    "evaluate_all",
    "expiry_severity",
    "key_reuse",
    "shared_key_peers",
]

EndpointKey = tuple[str, int, str | None]  # (address, port, sni)


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointInput:
    """One observation of an endpoint. ``chain`` is as presented (leaf first), possibly empty;
    ``tls_version`` and ``cipher`` are ``None`` when no handshake completed."""

    address: str
    port: int
    sni: str | None
    status: str
    tls_version: str | None = None
    cipher: str | None = None
    chain: tuple[CertInfo, ...] = ()

    @property
    def key(self) -> EndpointKey:
        return (self.address, self.port, self.sni)


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """What the rules know beyond the observation itself.

    ``previous_leaf`` is the leaf SHA-256 of the previous observation of the same endpoint
    (``None``: none, or it had no chain). ``key_shared_with`` holds the other endpoints serving the
    same leaf key with a different certificate (see :func:`shared_key_peers`).
    ``accepted_versions`` is the protocol probe's result (``None``: not probed).
    """

    previous_leaf: str | None = None
    key_shared_with: frozenset[EndpointKey] = field(default_factory=frozenset)
    accepted_versions: frozenset[str] | None = None


def evaluate(
    endpoint: EndpointInput,
    *,
    policy: Policy,
    trust: TrustStore,
    now: datetime,
    context: Context | None = None,
) -> tuple[Finding, ...]:
    """Every finding on ``endpoint`` at ``now`` (UTC), most severe first, in rule order within a
    severity."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    rules = Rules(endpoint, policy, trust, now, context or Context())
    return rules.run()


def evaluate_all(
    endpoints: Sequence[EndpointInput],
    *,
    policy: Policy,
    trust: TrustStore,
    now: datetime,
    previous: Mapping[EndpointKey, str] | None = None,
    probes: Mapping[EndpointKey, frozenset[str]] | None = None,
) -> dict[EndpointKey, tuple[Finding, ...]]:
    """:func:`evaluate` over a set of observations, with ``key_reuse`` computed across them.

    ``previous`` maps an endpoint to its previous leaf SHA-256, ``probes`` to its probe result.
    """
    peers = shared_key_peers(endpoints)
    out: dict[EndpointKey, tuple[Finding, ...]] = {}
    for endpoint in endpoints:
        key = endpoint.key
        context = Context(
            previous_leaf=(previous or {}).get(key),
            key_shared_with=peers.get(key, frozenset()),
            accepted_versions=(probes or {}).get(key),
        )
        out[key] = evaluate(endpoint, policy=policy, trust=trust, now=now, context=context)
    return out


def key_reuse(endpoints: Iterable[EndpointInput]) -> dict[str, frozenset[EndpointKey]]:
    """Leaf SPKI SHA-256 -> the endpoints serving it, for keys behind two or more certificates."""
    groups: dict[str, dict[EndpointKey, str]] = {}
    for endpoint in endpoints:
        leaf = endpoint.chain[0] if endpoint.chain else None
        if leaf is not None and leaf.error is None and leaf.spki_sha256 is not None:
            groups.setdefault(leaf.spki_sha256, {})[endpoint.key] = leaf.sha256
    return {
        spki: frozenset(members)
        for spki, members in groups.items()
        if len(set(members.values())) > 1
    }


def shared_key_peers(
    endpoints: Sequence[EndpointInput],
) -> dict[EndpointKey, frozenset[EndpointKey]]:
    """Endpoint -> the other endpoints serving its leaf key with a *different* certificate."""
    leaves = {e.key: e.chain[0].sha256 for e in endpoints if e.chain}
    out: dict[EndpointKey, frozenset[EndpointKey]] = {}
    for members in key_reuse(endpoints).values():
        for member in members:
            out[member] = frozenset(m for m in members if leaves[m] != leaves[member])
    return out


def at_or_above(findings: Iterable[Finding], severity: Severity) -> bool:
    """Whether any finding is at least ``severity`` (``--fail-on``)."""
    return any(f.severity >= severity for f in findings)
