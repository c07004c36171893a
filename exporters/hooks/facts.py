"""The facts a hook action sees (pure): :func:`context` builds a
:class:`~exporters.hooks.base.HookContext` from a finding and the inventory's view of its
endpoint; :func:`presenting` lists every endpoint presenting a certificate (key proven)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from exporters.hooks.ari_id import cert_id_from_hex
from exporters.hooks.base import HookContext
from scanner.inventory.read import EndpointRecord
from scanner.models import Finding
from scanner.serialize import iso

__all__ = ["Address", "context", "presenting", "proven"]

Address = tuple[str, int, str | None]


def presenting(endpoints: Iterable[EndpointRecord]) -> dict[str, tuple[Address, ...]]:
    """Every endpoint whose latest chain (main or alternative) has each leaf sha256, with the
    key proven (pure)."""
    found: dict[str, dict[Address, None]] = {}
    for e in endpoints:
        if not proven(e):
            continue
        for chain in (e.chain, *e.alt_chains):
            if chain:
                found.setdefault(chain[0].sha256, {})[(e.address, e.port, e.sni)] = None
    return {sha: tuple(where) for sha, where in found.items()}


def proven(endpoint: EndpointRecord) -> bool:
    """Whether the endpoint proved it holds the key of the chain it presented."""
    return not endpoint.key_unproven


def context(
    hook: str,
    finding: Finding,
    endpoint: EndpointRecord | None,
    *,
    endpoints: tuple[Address, ...] = (),
    names: tuple[str, ...] | None = None,
) -> HookContext:
    """The facts an action sees (pure); ``finding.sha256`` must be set. ``endpoints`` are all
    that present the certificate; ``names`` overrides the certificate's SANs (a group)."""
    assert finding.sha256 is not None
    cert = None
    if endpoint is not None:
        chains = (endpoint.chain, *endpoint.alt_chains)
        cert = next((c for chain in chains for c in chain if c.sha256 == finding.sha256), None)
    sans = cert.san_dns if cert is not None else ()
    if names is not None:
        sans = names
    not_after = cert.not_after if cert is not None else None
    replaces = cert_id_from_hex(cert.authority_key_id, cert.serial) if cert is not None else None
    listed = endpoints or ((finding.address, finding.port, finding.sni),)
    data: dict[str, Any] = {
        "hook": hook,
        "kind": finding.kind,
        "severity": finding.severity.label,
        "message": finding.message,
        "address": finding.address,
        "port": finding.port,
        "sni": finding.sni,
        "sha256": finding.sha256,
        "names": list(sans),
        "not_after": iso(not_after),
        "endpoints": [{"address": a, "port": p, "sni": n} for a, p, n in listed],
    }
    return HookContext(
        hook=hook,
        kind=finding.kind,
        severity=finding.severity.label,
        message=finding.message,
        address=finding.address,
        port=finding.port,
        sni=finding.sni,
        names=tuple(sans),
        not_after=not_after,
        sha256=finding.sha256,
        finding=data,
        endpoints=listed,
        replaces=replaces,
    )
