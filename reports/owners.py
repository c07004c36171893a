"""Owners and tags: the ``[owners]`` config section, and which rule owns an endpoint. Pure.

Theory of operation
-------------------
The section is a list of rules, tried in file order; the first that matches an endpoint owns
it::

    [[owners.rule]]
    name = "shop"                       # optional; "rule N" (1-based) otherwise
    owner = "web-team"                  # required
    environment = "prod"                # optional
    tags = ["pci", "public"]            # optional
    addresses = ["10.1.0.0/16"]         # any of these ranges (default: any address)
    names = ["*.shop.example"]          # any of these globs on the SNI name (default: any)
    ports = [443, 8443]                 # any of these ports (default: any)

A rule matches when every criterion it gives matches (an address in one of its ranges, *and*
the name in one of its globs, *and* the port in its list); a rule with no criteria matches
everything, so a last catch-all rule gives every remaining endpoint a default owner. ``names``
globs (``fnmatch``, case-insensitive) are matched against the SNI the endpoint was scanned with
only, never against names in its certificate: the server chooses those, and a certificate must
not be able to route its findings to another team. An endpoint scanned without a name matches
only rules without ``names``.

When the section has at least one rule, an endpoint no rule matches gets ``unowned`` (low), so
coverage can be driven to zero; with no section there is no finding. Invalid values are a
one-line :class:`~scanner.errors.UsageError` naming the key.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reports.model import Proposal
from scanner.errors import UsageError
from scanner.inventory.owners import OwnerAssignment
from scanner.models import Severity

__all__ = ["OwnerRule", "Owners", "parse_owners", "unowned"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_KEYS = ("name", "owner", "environment", "tags", "addresses", "names", "ports")
_MAX_RULES = 10_000
_MAX_TEXT = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class OwnerRule:
    """One rule; an empty criterion means "any"."""

    name: str
    owner: str
    environment: str | None = None
    tags: tuple[str, ...] = ()
    networks: tuple[Network, ...] = ()
    names: tuple[str, ...] = ()  # lowercase globs
    ports: frozenset[int] = frozenset()

    def matches(self, address: str, port: int, sni: str | None) -> bool:
        if self.ports and port not in self.ports:
            return False
        if self.networks:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                return False
            if not any(ip in net for net in self.networks):
                return False
        if self.names:
            name = (sni or "").lower().rstrip(".")
            return bool(name) and any(fnmatch.fnmatchcase(name, g) for g in self.names)
        return True


@dataclass(frozen=True, slots=True, kw_only=True)
class Owners:
    """The rules in file order (empty: no ``[owners]`` section)."""

    rules: tuple[OwnerRule, ...] = ()

    def assign(self, address: str, port: int, sni: str | None) -> OwnerAssignment | None:
        """The first matching rule's assignment, ``None`` when none matches."""
        for rule in self.rules:
            if rule.matches(address, port, sni):
                return OwnerAssignment(
                    owner=rule.owner, environment=rule.environment, tags=rule.tags, rule=rule.name
                )
        return None


def unowned(owners: Owners, assignment: OwnerAssignment | None) -> Proposal | None:
    """``unowned`` when rules exist and none matched."""
    if not owners.rules or assignment is not None:
        return None
    return Proposal(
        kind="unowned",
        severity=Severity.LOW,
        message=f"no [owners] rule matches this endpoint ({len(owners.rules)} rule(s) tried); "
        "add one so its findings reach someone",
    )


def _text(where: str, value: object, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_TEXT:
        raise UsageError(f"{where}: expected a non-empty string of at most {_MAX_TEXT} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise UsageError(f"{where}: control characters are not allowed")
    return value.strip()


def _texts(where: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise UsageError(f"{where}: expected a list of strings")
    out = []
    for item in value:
        text = _text(where, item)
        assert text is not None
        out.append(text)
    return tuple(out)


def _rule(number: int, table: object, source: str) -> OwnerRule:
    where = f"{source}: owners.rule[{number}]"
    if not isinstance(table, Mapping):
        raise UsageError(f"{where}: expected a table ([[owners.rule]])")
    for key in table:
        if key not in _KEYS:
            raise UsageError(f"{where}.{key}: unknown key (expected one of {', '.join(_KEYS)})")
    owner = _text(f"{where}.owner", table.get("owner"))
    assert owner is not None
    name = _text(f"{where}.name", table.get("name"), optional=True) or f"rule {number}"
    networks: list[Network] = []
    for text in _texts(f"{where}.addresses", table.get("addresses", [])):
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise UsageError(f"{where}.addresses: not an address or CIDR: {text[:60]!r}") from None
    ports = table.get("ports", [])
    if not isinstance(ports, list) or not all(
        isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 65535 for p in ports
    ):
        raise UsageError(f"{where}.ports: expected a list of ports 1-65535")
    return OwnerRule(
        name=name,
        owner=owner,
        environment=_text(f"{where}.environment", table.get("environment"), optional=True),
        tags=tuple(dict.fromkeys(_texts(f"{where}.tags", table.get("tags", [])))),
        networks=tuple(networks),
        names=tuple(
            g.lower().rstrip(".") for g in _texts(f"{where}.names", table.get("names", []))
        ),
        ports=frozenset(ports),
    )


def parse_owners(section: Mapping[str, Any] | None, *, source: str) -> Owners:
    """Validate the raw ``owners`` section (``Config.sections.get("owners")``)."""
    if not section:
        return Owners()
    for key in section:
        if key != "rule":
            raise UsageError(f"{source}: owners.{key}: unknown key (expected [[owners.rule]])")
    rules: Sequence[object] = section.get("rule", [])
    if not isinstance(rules, list):
        raise UsageError(f"{source}: owners.rule: expected [[owners.rule]] tables")
    if len(rules) > _MAX_RULES:
        raise UsageError(f"{source}: owners.rule: at most {_MAX_RULES} rules")
    parsed = tuple(_rule(n, table, source) for n, table in enumerate(rules, 1))
    seen: set[str] = set()
    for rule in parsed:
        if rule.name in seen:
            raise UsageError(f"{source}: owners.rule: two rules are named {rule.name!r}")
        seen.add(rule.name)
    return Owners(rules=parsed)
