"""Extra handshakes with an endpoint that already handshook: which legacy TLS versions it still
accepts (``--probe-protocols``) and which other certificates it holds (``--all-certs``).

Theory of operation
-------------------
Both are a short, bounded series of new connections, each made by the caller's ``connect``
(``scanner.engine.crew``: same address, same STARTTLS preamble, same limits) with a client context
that offers less than the sweep's:

* **Legacy versions.** A server picks the highest version both sides offer, so the main
  handshake's version is the server's ceiling: a TLS 1.1 server is known to accept 1.1, a
  TLS 1.0 server only 1.0. Above that, one connection offering at most TLS 1.1, then one offering
  at most TLS 1.0, and the series stops at the first refusal or at an answer below the offer
  (nothing between is accepted). Never more than two connections.
* **Other key types.** A server holding an RSA and an ECDSA certificate presents the one that
  suits the client's offer. One connection per key type of ``tls.KEY_TYPES`` other than the main
  leaf's (both when the leaf's is unknown or unreadable) offers only that type's TLS 1.2 cipher
  suites and signature algorithms; a chain is kept when its leaf differs from every leaf seen.
  A refusal (the server has no certificate of that type) is simply no chain.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from OpenSSL import SSL

from scanner.engine import tls

#: One more connection to the endpoint with this client context; faults are values.
Connect = Callable[[SSL.Context], Awaitable[tls.Negotiated | tls.Fault]]

#: Versions to try in the protocol probe, highest first, with the version each probe offers
#: at most. A server answering a probe with a lower version than offered also accepts that one.
_LEGACY: Final = ("TLSv1.1", "TLSv1")
_VERSION_ORDER: Final = {"TLSv1": 0, "TLSv1.1": 1, "TLSv1.2": 2, "TLSv1.3": 3}


async def legacy_versions(negotiated: str, connect: Connect) -> tuple[str, ...]:
    """Which of TLS 1.1 and 1.0 the endpoint also accepts, given the version it ``negotiated``
    with the full offer (never more than two connections)."""
    accepted: list[str] = []
    for version in _LEGACY:
        if _VERSION_ORDER.get(negotiated, 99) < _VERSION_ORDER[version]:
            continue  # above the server's ceiling: it would have negotiated it
        if negotiated == version:
            accepted.append(version)
            continue
        # Offer TLS 1.0 up to `version`: a refusal means none of them is accepted.
        result = await connect(tls.client_context("TLSv1", version))
        if not isinstance(result, tls.Negotiated):
            break
        got = result.tls_version
        if got in _LEGACY and got not in accepted:
            accepted.append(got)
        if got != version:
            break  # it answered below what was offered: nothing between is accepted
    return tuple(v for v in _LEGACY if v in accepted)


def leaf_key_type(chain: tuple[bytes, ...]) -> str | None:
    """The ``tls.KEY_TYPES`` key of the leaf's public key; None when unknown or unreadable."""
    if not chain:
        return None
    try:
        key = x509.load_der_x509_certificate(chain[0]).public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # Hostile DER, or a key cryptography cannot load (secp160r1, SM2): try both types.
        return None
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC"
    return None


async def alt_chains(
    chain: tuple[bytes, ...], min_version: str, connect: Connect
) -> tuple[tuple[bytes, ...], ...]:
    """The chains the endpoint presents when offered only one other server key type."""
    found: list[tuple[bytes, ...]] = []
    leaves = {chain[0]} if chain else set()
    have = leaf_key_type(chain)
    for key_type in tls.KEY_TYPES:
        if key_type == have:
            continue
        result = await connect(tls.client_context(min_version, "TLSv1.3", key_type))
        if isinstance(result, tls.Negotiated) and result.chain and result.chain[0] not in leaves:
            leaves.add(result.chain[0])
            found.append(result.chain)
    return tuple(found)
