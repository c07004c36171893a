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

Alternative chains (``--all-certs``: a server holding an RSA and an ECDSA certificate) are judged
like the main chain by every certificate-level rule; their findings name the certificate concerned
(a finding about the alternative chain as a whole, such as ``chain_order``, names its leaf) and
their messages start with ``alternative chain N:``. A finding already raised for the same kind and
certificate (an intermediate both chains share) is not repeated. The endpoint-level rules
(``legacy_protocol``, ``weak_cipher``), the revocation rules (:mod:`reports.revocation`, on the
stapled OCSP response) and ``certificate_changed`` run once, on the observation and
its main leaf. ``key_reuse`` looks at every leaf, main and alternative (:func:`leaf_key_peers`).

The kinds, their default severities and the ``expiring`` rule for short-lived certificates are
tabled in :mod:`reports.rules`, which holds the rules themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from reports.model import Context, EndpointInput, EndpointKey
from reports.policy import Policy
from reports.rules import LEGACY_VERSIONS, Rules, expiry_severity
from reports.trust import TrustStore
from scanner.models import CertInfo, Finding, Severity

__all__ = [
    "LEGACY_VERSIONS",
    "Context",
    "EndpointInput",
    "EndpointKey",
    "at_or_above",
    "evaluate",
    "evaluate_all",
    "expiry_severity",
    "key_context",
    "key_reuse",
    "leaf_key_peers",
    "leaf_rows",
    "peers_from_rows",
    "shared_key_peers",
]


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
    peers = leaf_key_peers(endpoints)
    out: dict[EndpointKey, tuple[Finding, ...]] = {}
    for endpoint in endpoints:
        key = endpoint.key
        context = replace(
            key_context(endpoint, peers),
            previous_leaf=(previous or {}).get(key),
            accepted_versions=(probes or {}).get(key),
        )
        out[key] = evaluate(endpoint, policy=policy, trust=trust, now=now, context=context)
    return out


def _leaves(endpoint: EndpointInput) -> Iterable[CertInfo]:
    """The parsed leaves of every chain the endpoint presented, main chain first (none when
    the server never proved it holds the key: a copied certificate proves no reuse)."""
    if not endpoint.key_proven:
        return
    for chain in (endpoint.chain, *endpoint.alt_chains):
        if chain and chain[0].error is None and chain[0].spki_sha256 is not None:
            yield chain[0]


def leaf_rows(endpoints: Iterable[EndpointInput]) -> Iterator[tuple[EndpointKey, str, str]]:
    """(endpoint, leaf SHA-256, leaf SPKI SHA-256) of every parsed leaf, main chain first: the
    rows :func:`peers_from_rows` groups (the inventory reads the same rows without chains)."""
    for endpoint in endpoints:
        for leaf in _leaves(endpoint):
            assert leaf.spki_sha256 is not None
            yield endpoint.key, leaf.sha256, leaf.spki_sha256


def _key_groups(
    rows: Iterable[tuple[EndpointKey, str, str]],
) -> dict[str, dict[tuple[EndpointKey, str], None]]:
    """Leaf SPKI SHA-256 -> the (endpoint, leaf SHA-256) pairs serving it, for keys behind two or
    more distinct certificates."""
    groups: dict[str, dict[tuple[EndpointKey, str], None]] = {}
    for key, sha256, spki in rows:
        groups.setdefault(spki, {})[(key, sha256)] = None
    return {
        spki: members for spki, members in groups.items() if len({sha for _, sha in members}) > 1
    }


def key_reuse(endpoints: Iterable[EndpointInput]) -> dict[str, frozenset[EndpointKey]]:
    """Leaf SPKI SHA-256 -> the endpoints serving it, for keys behind two or more certificates.

    Every leaf counts, those of alternative chains too."""
    return {
        spki: frozenset(key for key, _ in members)
        for spki, members in _key_groups(leaf_rows(endpoints)).items()
    }


def leaf_key_peers(
    endpoints: Iterable[EndpointInput],
) -> Mapping[tuple[EndpointKey, str], frozenset[EndpointKey]]:
    """(endpoint, leaf SHA-256) -> the *other* endpoints serving that leaf's key with a
    different certificate, for every leaf (main and alternative) that has such peers."""
    return peers_from_rows(leaf_rows(endpoints))


def peers_from_rows(
    rows: Iterable[tuple[EndpointKey, str, str]],
) -> Mapping[tuple[EndpointKey, str], frozenset[EndpointKey]]:
    """:func:`leaf_key_peers` from (endpoint, leaf SHA-256, leaf SPKI SHA-256) rows."""
    return KeyPeers(_key_groups(rows))


class KeyPeers(Mapping[tuple[EndpointKey, str], frozenset[EndpointKey]]):
    """(endpoint, leaf SHA-256) -> the other endpoints serving that leaf's key with a different
    certificate, each set built when it is looked up, from its key's group.

    Holding every set at once cost each member of a group the size of the group: the 5,000
    RSA leaves of the 10,000 lab share 16 keys, about 180 MB of sets. Here each group keeps
    its endpoints once, and those serving it with one certificate only by that certificate:
    endpoint ``k`` is a peer of ``(key, sha)`` exactly when ``k != key`` and ``k`` serves the
    key with some certificate other than ``sha``, that is, unless ``sha`` is the only one."""

    __slots__ = ("_index",)

    def __init__(self, groups: Mapping[str, dict[tuple[EndpointKey, str], None]]) -> None:
        self._index: dict[tuple[EndpointKey, str], _KeyGroup] = {}
        for members in groups.values():
            shas: dict[EndpointKey, set[str]] = {}
            for key, sha in members:
                shas.setdefault(key, set()).add(sha)
            sole: dict[str, set[EndpointKey]] = {}
            for key, served in shas.items():
                if len(served) == 1:
                    sole.setdefault(next(iter(served)), set()).add(key)
            group = _KeyGroup(frozenset(shas), {sha: frozenset(keys) for sha, keys in sole.items()})
            for pair in members:
                self._index[pair] = group

    def _peers(self, pair: tuple[EndpointKey, str]) -> frozenset[EndpointKey]:
        key, sha = pair
        group = self._index[pair]
        return group.endpoints.difference(group.sole.get(sha, ()), (key,))

    def __getitem__(self, pair: tuple[EndpointKey, str]) -> frozenset[EndpointKey]:
        peers = self._peers(pair)
        if not peers:
            raise KeyError(pair)
        return peers

    def __iter__(self) -> Iterator[tuple[EndpointKey, str]]:
        return (pair for pair in self._index if self._peers(pair))

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass(frozen=True, slots=True)
class _KeyGroup:
    """The endpoints serving one key, and those serving it with a single certificate, by it."""

    endpoints: frozenset[EndpointKey]
    sole: Mapping[str, frozenset[EndpointKey]]


def shared_key_peers(
    endpoints: Sequence[EndpointInput],
) -> dict[EndpointKey, frozenset[EndpointKey]]:
    """Endpoint -> the other endpoints serving its (main) leaf key with a *different*
    certificate."""
    leaves = {e.key: e.chain[0].sha256 for e in endpoints if e.chain}
    return {
        key: peers
        for (key, sha), peers in leaf_key_peers(endpoints).items()
        if leaves.get(key) == sha
    }


def key_context(
    endpoint: EndpointInput, peers: Mapping[tuple[EndpointKey, str], frozenset[EndpointKey]]
) -> Context:
    """A :class:`Context` holding only the ``key_reuse`` peers of ``endpoint``'s leaves, from
    :func:`leaf_key_peers`."""
    key = endpoint.key
    main = endpoint.chain[0].sha256 if endpoint.chain else None
    alt = {
        chain[0].sha256: peers[(key, chain[0].sha256)]
        for chain in endpoint.alt_chains
        if chain and (key, chain[0].sha256) in peers and chain[0].sha256 != main
    }
    return Context(
        key_shared_with=peers.get((key, main), frozenset()) if main else frozenset(),
        alt_key_shared_with=alt,
    )


def at_or_above(findings: Iterable[Finding], severity: Severity) -> bool:
    """Whether any finding is at least ``severity`` (``--fail-on``)."""
    return any(f.severity >= severity for f in findings)
