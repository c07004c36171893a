"""Fleet consistency: one name and port served from several addresses should present one
certificate. Pure.

Theory of operation
-------------------
A name with several A/AAAA records is swept on every address, each an endpoint
``(address, port, sni)`` with the name as SNI. :func:`fleet_inconsistencies` groups the latest
observations by ``(sni, port)`` (endpoints scanned without a name are not grouped: nothing says
two addresses are one service) and, in every group of two or more addresses whose main leaves
differ, takes the leaf that ends last as the one the fleet should serve. Each endpoint serving
another leaf gets ``fleet_inconsistent``, naming the addresses that serve the same stale leaf and
how long it has left: this is the outage where one load-balancer node keeps an old certificate.

Severity: high when any certificate of the group is expired or expiring (as the ``expiring``
rule counts it), medium otherwise (two healthy certificates still mean a deployment that did not
reach every node). Leaves that cannot be parsed take no part.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from datetime import datetime

from reports.expiry import expiry_severity
from reports.model import EndpointInput, EndpointKey, Proposal
from reports.names import clean, quote
from reports.policy import Policy
from scanner.models import CertInfo, Severity

__all__ = ["fleet_inconsistencies"]

_SHOWN = 5  # addresses listed before "+N more"


def _address_order(address: str) -> tuple[int, int | str]:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return (2, address)
    return (parsed.version, int(parsed))


def _troubled(cert: CertInfo, now: datetime, policy: Policy) -> bool:
    if cert.not_after is None or cert.not_before is None:
        return False
    return (
        now > cert.not_after
        or expiry_severity(cert.not_before, cert.not_after, now, policy) is not None
    )


def _left(cert: CertInfo, now: datetime) -> str:
    if cert.not_after is None:
        return "no expiry date"
    days = (cert.not_after - now).total_seconds() / 86400
    if days < 0:
        return f"expired {int(-days)} days ago"
    if days < 1:
        return f"expires in {int(days * 24)} hours"
    return f"expires in {int(days)} day{'' if int(days) == 1 else 's'}"


def _names(addresses: list[str]) -> str:
    shown = [clean(a) for a in addresses[:_SHOWN]]
    more = len(addresses) - len(shown)
    if more:
        return ", ".join(shown) + f" and {more} more"
    if len(shown) == 1:
        return shown[0]
    return ", ".join(shown[:-1]) + " and " + shown[-1]


def fleet_inconsistencies(
    endpoints: Iterable[EndpointInput], *, now: datetime, policy: Policy
) -> dict[EndpointKey, Proposal]:
    """``fleet_inconsistent`` for each endpoint serving a stale leaf (module docstring)."""
    groups: dict[tuple[str, int], dict[str, EndpointInput]] = {}
    for endpoint in endpoints:
        if endpoint.sni is None or not endpoint.chain or endpoint.chain[0].error is not None:
            continue
        groups.setdefault((endpoint.sni.lower(), endpoint.port), {})[endpoint.address] = endpoint
    out: dict[EndpointKey, Proposal] = {}
    for (name, port), members in groups.items():
        by_leaf: dict[str, list[str]] = {}
        leaves: dict[str, CertInfo] = {}
        for address, endpoint in members.items():
            leaf = endpoint.chain[0]
            by_leaf.setdefault(leaf.sha256, []).append(address)
            leaves[leaf.sha256] = leaf
        if len(members) < 2 or len(by_leaf) < 2:
            continue
        fresh = max(
            leaves.values(),
            key=lambda c: (c.not_after or datetime.min.replace(tzinfo=now.tzinfo), c.sha256),
        )
        troubled = any(_troubled(c, now, policy) for c in leaves.values())
        severity = Severity.HIGH if troubled else Severity.MEDIUM
        for sha256, addresses in by_leaf.items():
            if sha256 == fresh.sha256:
                continue
            addresses.sort(key=_address_order)
            verb = "serves" if len(addresses) == 1 else "serve"
            message = (
                f"{quote(name)}:{port} presents {len(by_leaf)} certificates on {len(members)} "
                f"addresses; {_names(addresses)} still {verb} sha256 {sha256[:16]}… "
                f"({_left(leaves[sha256], now)}) where the others serve {fresh.sha256[:16]}… "
                f"({_left(fresh, now)})"
            )
            for address in addresses:
                endpoint = members[address]
                out[endpoint.key] = Proposal(
                    kind="fleet_inconsistent", severity=severity, message=message, sha256=sha256
                )
    return out
