"""Plain-dict views of certscan data for JSON output (``sweep --json``, ``inventory --json``).

One name per idea: the keys here are the column names of the inventory and the report schema.
Times are ISO 8601 UTC with a ``Z``; fingerprints and serials are lowercase hex.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from scanner.models import CertInfo, Handshake, Outcome, ScanFailure


class Endpoint(Protocol):
    """Anything that names an endpoint: a Target or a stored endpoint record."""

    @property
    def address(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def sni(self) -> str | None: ...


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a trailing ``Z`` (``None`` stays ``None``)."""
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def cert_to_dict(cert: CertInfo) -> dict[str, Any]:
    """The certificate object of ``sweep --json`` and the report's ``chain`` entries."""
    return {
        "sha256": cert.sha256,
        "subject": cert.subject,
        "issuer": cert.issuer,
        "serial": cert.serial,
        "not_before": iso(cert.not_before),
        "not_after": iso(cert.not_after),
        "key_type": cert.key_type,
        "key_bits": cert.key_bits,
        "signature_hash": cert.signature_hash,
        "sans": list(cert.sans),
        "error": cert.error,
    }


def endpoint_dict(
    target: Endpoint,
    *,
    status: str,
    error: str | None,
    tls_version: str | None,
    cipher: str | None,
    chain: Sequence[CertInfo],
) -> dict[str, Any]:
    """The endpoint object shared by ``sweep --json``, ``inventory --json`` and reports."""
    return {
        "address": target.address,
        "port": target.port,
        "sni": target.sni,
        "status": status,
        "error": error,
        "tls_version": tls_version,
        "cipher": cipher,
        "chain": [cert_to_dict(c) for c in chain],
    }


class Observed(Endpoint, Protocol):
    """A stored observation of an endpoint (an inventory record or a report's view)."""

    @property
    def status(self) -> str: ...
    @property
    def error(self) -> str | None: ...
    @property
    def tls_version(self) -> str | None: ...
    @property
    def cipher(self) -> str | None: ...
    @property
    def chain(self) -> Sequence[CertInfo]: ...


def observed_dict(observed: Observed) -> dict[str, Any]:
    """The endpoint object for a stored observation (``inventory --json``, reports)."""
    return endpoint_dict(
        observed,
        status=observed.status,
        error=observed.error,
        tls_version=observed.tls_version,
        cipher=observed.cipher,
        chain=observed.chain,
    )


class Recorded(Observed, Protocol):
    """An inventory record: an observation with how TLS started and its other chains."""

    @property
    def protocol(self) -> str | None: ...
    @property
    def alt_chains(self) -> Sequence[Sequence[CertInfo]]: ...


def discovery_fields(
    protocol: str | None, alt_chains: Sequence[Sequence[CertInfo]]
) -> dict[str, Any]:
    """The keys ``sweep --json`` and ``inventory --json`` add to the endpoint object:
    ``protocol`` ("tls" for implicit TLS, else the STARTTLS protocol spoken; null for a
    failure) and ``alt_chains`` (``--all-certs``: the other chains, each a list like ``chain``).
    """
    return {
        "protocol": protocol,
        "alt_chains": [[cert_to_dict(c) for c in alt] for alt in alt_chains],
    }


def tls_details(
    legacy_capture: bool | None, group: str | None, signature_scheme: str | None
) -> dict[str, Any]:
    """The key exchange keys ``sweep --json`` and ``inventory --json`` add last:
    ``legacy_capture`` (the chain was read from a hand-built legacy hello's records; null for
    a failure), ``group`` (the key exchange group) and ``signature_scheme`` (null when none or
    not known)."""
    return {
        "legacy_capture": legacy_capture,
        "group": group,
        "signature_scheme": signature_scheme,
    }


class Detailed(Recorded, Protocol):
    """An inventory record with its key exchange details."""

    @property
    def legacy_capture(self) -> bool | None: ...
    @property
    def group(self) -> str | None: ...
    @property
    def signature_scheme(self) -> str | None: ...


def record_dict(record: Detailed) -> dict[str, Any]:
    """One line of ``inventory --json``."""
    return (
        observed_dict(record)
        | discovery_fields(record.protocol, record.alt_chains)
        | tls_details(record.legacy_capture, record.group, record.signature_scheme)
    )


def outcome_to_dict(
    outcome: Outcome,
    chain: Sequence[CertInfo],
    alt_chains: Sequence[Sequence[CertInfo]] = (),
) -> dict[str, Any]:
    """One line of ``sweep --json``: the outcome of one target with its parsed chain (and
    its parsed ``alt_chains``, ``--all-certs``)."""
    match outcome:
        case Handshake():
            return endpoint_dict(
                outcome.target,
                status=outcome.status,
                error=None,
                tls_version=outcome.tls_version,
                cipher=outcome.cipher,
                chain=chain,
            ) | (
                discovery_fields(outcome.protocol, alt_chains)
                | tls_details(outcome.legacy_capture, outcome.group, outcome.signature_scheme)
            )
        case ScanFailure():
            return (
                endpoint_dict(
                    outcome.target,
                    status=outcome.status,
                    error=outcome.detail,
                    tls_version=None,
                    cipher=None,
                    chain=(),
                )
                | discovery_fields(None, ())
                | tls_details(None, None, None)
            )


def json_line(obj: dict[str, Any]) -> str:
    """Compact, ASCII-only JSON (no raw control or bidi characters reach a terminal)."""
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":"), sort_keys=False)
