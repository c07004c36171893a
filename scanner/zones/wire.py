"""Scan outcomes on the wire: ``Handshake`` and ``ScanFailure`` as JSON-safe dicts and back.

Theory of operation
-------------------
A zone agent (``scanner.zones``) sends what it observed to a central ingest worker through a
message broker, as JSON (never pickle: the ingest side must not run code a message chose). This
module is that format, for one outcome, exactly: ``outcome_from_wire(outcome_to_wire(o)) == o``
for every outcome the engine can produce, field for field, tuples as tuples, datetimes as UTC
datetimes, floats bit for bit (JSON keeps ``repr`` precision).

* Bytes travel as base64 text. Certificates (``chain``, ``alt_chains``) are not inlined: the
  outcome names each by its SHA-256 (lowercase hex) and the message carries one
  :class:`DerTable` of ``sha256 -> base64 DER``, so a certificate presented by four hundred
  endpoints of a batch is sent once.
* Datetimes travel as ISO 8601 with an explicit ``+00:00``; a naive datetime is refused when
  encoding (the models are UTC by contract) and when decoding.

Decoding is validation: everything arriving from the broker is hostile until checked. Every
field must have its exact JSON type (``true`` is not an integer), text and lists are bounded
(:class:`WireLimits`: DER size, chain length, text length), an address must be a canonical IP
literal, a port 1-65535, a protocol one certscan knows, a float finite and not negative, and a
table entry's DER must hash to its name. Any violation raises :class:`WireError` naming the
field; unknown keys are errors too, so a newer sender is noticed rather than half-understood.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from scanner.models import PROTOCOLS, FailureKind, Handshake, Outcome, ScanFailure, Target

__all__ = [
    "DEFAULT_LIMITS",
    "DerTable",
    "WireError",
    "WireLimits",
    "from_datetime",
    "outcome_from_wire",
    "outcome_to_wire",
    "to_datetime",
]

_T = TypeVar("_T")


class WireError(ValueError):
    """A message (or part of one) is not what this version of certscan sends."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WireLimits:
    """Bounds on what one message may carry."""

    max_der_bytes: int = 256 * 1024  # one certificate (the engine reads 256 KiB per server)
    max_chain: int = 4096  # certificates in one chain (256 KiB of tiny ones)
    max_alt_chains: int = 8  # --all-certs adds at most two
    max_certs: int = 16384  # distinct certificates in one table
    max_text: int = 16 * 1024  # one text field (an error detail)
    max_staple_bytes: int = 256 * 1024  # one stapled OCSP response


DEFAULT_LIMITS = WireLimits()
_MAX_NAME = 1024  # sni, cipher, version names: far above anything real


# ---------------------------------------------------------------- typed getters


def typed(data: Mapping[str, Any], key: str, kind: type[_T]) -> _T:
    """``data[key]``, which must be present and exactly of type ``kind`` (bool is no int)."""
    if key not in data:
        raise WireError(f"{key}: missing")
    value = data[key]
    if type(value) is not kind:
        if kind is float and type(value) is int:  # JSON writes 3.0 as 3 in some encoders
            return float(value)  # type: ignore[return-value]
        raise WireError(f"{key}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def optional(data: Mapping[str, Any], key: str, kind: type[_T]) -> _T | None:
    """Like :func:`typed`, but ``null`` is allowed."""
    if key in data and data[key] is None:
        return None
    return typed(data, key, kind)


def mapping(value: object, what: str) -> Mapping[str, Any]:
    if type(value) is not dict:
        raise WireError(f"{what}: expected an object, got {type(value).__name__}")
    for key in value:
        if type(key) is not str:
            raise WireError(f"{what}: keys must be strings")
    return value


def only_keys(data: Mapping[str, Any], allowed: frozenset[str], what: str) -> None:
    extra = set(data) - allowed
    if extra:
        raise WireError(f"{what}: unknown field {sorted(extra)[0]!r}")


def text(data: Mapping[str, Any], key: str, limit: int) -> str:
    value = typed(data, key, str)
    if len(value) > limit:
        raise WireError(f"{key}: longer than {limit} characters")
    return value


def optional_text(data: Mapping[str, Any], key: str, limit: int) -> str | None:
    return None if optional(data, key, str) is None else text(data, key, limit)


def integer(data: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = typed(data, key, int)
    if not low <= value <= high:
        raise WireError(f"{key}: {value} is outside {low}..{high}")
    return value


def seconds(data: Mapping[str, Any], key: str) -> float:
    value = typed(data, key, float)
    if not math.isfinite(value) or value < 0:
        raise WireError(f"{key}: must be a finite number >= 0")
    return value


def boolean(data: Mapping[str, Any], key: str) -> bool:
    return typed(data, key, bool)


def items(value: object, what: str, limit: int) -> list[Any]:
    if type(value) is not list:
        raise WireError(f"{what}: expected a list, got {type(value).__name__}")
    if len(value) > limit:
        raise WireError(f"{what}: more than {limit} entries")
    return value


def to_datetime(value: datetime) -> str:
    """A UTC datetime as ISO 8601 text with ``+00:00``."""
    offset = value.utcoffset()
    if offset is None:
        raise ValueError("naive datetime: certscan datetimes are UTC")
    return value.astimezone(UTC).isoformat()


def from_datetime(data: Mapping[str, Any], key: str) -> datetime:
    raw = text(data, key, 64)
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise WireError(f"{key}: not an ISO 8601 datetime") from None
    if value.utcoffset() != timedelta(0):
        raise WireError(f"{key}: must be UTC (+00:00)")
    return value.replace(tzinfo=UTC)


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _unb64(raw: str, what: str, limit: int) -> bytes:
    if len(raw) > 4 * (limit // 3 + 1):
        raise WireError(f"{what}: larger than {limit} bytes")
    try:
        value = base64.b64decode(raw.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise WireError(f"{what}: not base64") from None
    if len(value) > limit:
        raise WireError(f"{what}: larger than {limit} bytes")
    return value


# ---------------------------------------------------------------- certificates


class DerTable:
    """The certificates one message carries, DER by SHA-256 (lowercase hex), each once."""

    __slots__ = ("_der",)

    def __init__(self) -> None:
        self._der: dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self._der)

    def add(self, der: bytes) -> str:
        """Put ``der`` in the table (once); return its name, the SHA-256 hex."""
        name = hashlib.sha256(der).hexdigest()
        self._der.setdefault(name, der)
        return name

    def get(self, name: object, what: str) -> bytes:
        if type(name) is not str or name not in self._der:
            raise WireError(f"{what}: names no certificate of the message")
        return self._der[name]

    def to_wire(self) -> dict[str, str]:
        return {name: _b64(der) for name, der in self._der.items()}

    @classmethod
    def from_wire(cls, value: object, limits: WireLimits = DEFAULT_LIMITS) -> DerTable:
        """Check and decode a table: base64, size, and that each DER hashes to its name."""
        data = mapping(value, "certs")
        if len(data) > limits.max_certs:
            raise WireError(f"certs: more than {limits.max_certs} certificates")
        table = cls()
        for name, raw in data.items():
            if type(raw) is not str:
                raise WireError("certs: each certificate must be base64 text")
            der = _unb64(raw, "certs", limits.max_der_bytes)
            if hashlib.sha256(der).hexdigest() != name:
                raise WireError("certs: a certificate does not match its SHA-256 name")
            table._der[name] = der
        return table


# ---------------------------------------------------------------- targets and outcomes


_TARGET_KEYS = frozenset({"address", "port", "sni", "protocol"})
_HANDSHAKE_KEYS = frozenset(
    {
        "type",
        "target",
        "started_at",
        "chain",
        "tls_version",
        "cipher",
        "alpn",
        "ocsp_staple",
        "client_cert_requested",
        "legacy_versions",
        "connect_seconds",
        "handshake_seconds",
        "protocol",
        "alt_chains",
        # Added with legacy capture and key exchange details; absent from older agents.
        "legacy_capture",
        "group",
        "signature_scheme",
        "key_proven",
    }
)
_FAILURE_KEYS = frozenset(
    {"type", "target", "started_at", "kind", "detail", "elapsed_seconds", "connected"}
)
_KINDS = {kind.value: kind for kind in FailureKind}


def _target_to_wire(target: Target) -> dict[str, Any]:
    return {
        "address": target.address,
        "port": target.port,
        "sni": target.sni,
        "protocol": target.protocol,
    }


def _target_from_wire(value: object) -> Target:
    data = mapping(value, "target")
    only_keys(data, _TARGET_KEYS, "target")
    address = text(data, "address", 64)
    try:
        canonical = str(ipaddress.ip_address(address))
    except ValueError:
        raise WireError("target.address: not an IP address") from None
    if canonical != address:
        raise WireError("target.address: not in canonical form")
    protocol = optional_text(data, "protocol", 32)
    if protocol is not None and protocol not in PROTOCOLS:
        raise WireError("target.protocol: unknown protocol")
    return Target(
        address=address,
        port=integer(data, "port", 1, 65535),
        sni=optional_text(data, "sni", _MAX_NAME),
        protocol=protocol,
    )


def _protocol(data: Mapping[str, Any]) -> str | None:
    protocol = optional_text(data, "protocol", 32)
    if protocol is not None and protocol not in PROTOCOLS:
        raise WireError("protocol: unknown protocol")
    return protocol


def outcome_to_wire(outcome: Outcome, certs: DerTable) -> dict[str, Any]:
    """``outcome`` as a JSON-safe dict; its certificates go into ``certs``."""
    match outcome:
        case Handshake():
            return {
                "type": "handshake",
                "target": _target_to_wire(outcome.target),
                "started_at": to_datetime(outcome.started_at),
                "chain": [certs.add(der) for der in outcome.chain],
                "tls_version": outcome.tls_version,
                "cipher": outcome.cipher,
                "alpn": outcome.alpn,
                "ocsp_staple": None if outcome.ocsp_staple is None else _b64(outcome.ocsp_staple),
                "client_cert_requested": outcome.client_cert_requested,
                "legacy_versions": (
                    None if outcome.legacy_versions is None else list(outcome.legacy_versions)
                ),
                "connect_seconds": outcome.connect_seconds,
                "handshake_seconds": outcome.handshake_seconds,
                "protocol": outcome.protocol,
                "alt_chains": [[certs.add(der) for der in alt] for alt in outcome.alt_chains],
                "legacy_capture": outcome.legacy_capture,
                "group": outcome.group,
                "signature_scheme": outcome.signature_scheme,
                "key_proven": outcome.key_proven,
            }
        case ScanFailure():
            return {
                "type": "failure",
                "target": _target_to_wire(outcome.target),
                "started_at": to_datetime(outcome.started_at),
                "kind": outcome.kind.value,
                "detail": outcome.detail,
                "elapsed_seconds": outcome.elapsed_seconds,
                "connected": outcome.connected,
            }
    raise TypeError(f"not an outcome: {type(outcome).__name__}")


def outcome_from_wire(
    value: object, certs: DerTable, limits: WireLimits = DEFAULT_LIMITS
) -> Outcome:
    """Check and rebuild an outcome; certificates are looked up in ``certs``."""
    data = mapping(value, "outcome")
    kind = data.get("type")
    if kind == "handshake":
        return _handshake(data, certs, limits)
    if kind == "failure":
        only_keys(data, _FAILURE_KEYS, "failure")
        name = text(data, "kind", 64)
        if name not in _KINDS:
            raise WireError("kind: unknown failure kind")
        return ScanFailure(
            target=_target_from_wire(data.get("target")),
            started_at=from_datetime(data, "started_at"),
            kind=_KINDS[name],
            detail=text(data, "detail", limits.max_text),
            elapsed_seconds=seconds(data, "elapsed_seconds"),
            connected=boolean(data, "connected"),
        )
    raise WireError("outcome.type: must be 'handshake' or 'failure'")


def _chain(value: object, certs: DerTable, limits: WireLimits, what: str) -> tuple[bytes, ...]:
    return tuple(certs.get(name, what) for name in items(value, what, limits.max_chain))


def _handshake(data: Mapping[str, Any], certs: DerTable, limits: WireLimits) -> Handshake:
    only_keys(data, _HANDSHAKE_KEYS, "handshake")
    staple = optional(data, "ocsp_staple", str)
    legacy = optional(data, "legacy_versions", list)
    alts = items(data.get("alt_chains"), "alt_chains", limits.max_alt_chains)
    versions: tuple[str, ...] | None = None
    if legacy is not None:
        entries = items(legacy, "legacy_versions", 8)
        if any(type(v) is not str or len(v) > 32 for v in entries):
            raise WireError("legacy_versions: each must be a short string")
        versions = tuple(entries)
    return Handshake(
        target=_target_from_wire(data.get("target")),
        started_at=from_datetime(data, "started_at"),
        chain=_chain(data.get("chain"), certs, limits, "chain"),
        tls_version=text(data, "tls_version", _MAX_NAME),
        cipher=text(data, "cipher", _MAX_NAME),
        alpn=optional_text(data, "alpn", _MAX_NAME),
        ocsp_staple=None
        if staple is None
        else _unb64(staple, "ocsp_staple", limits.max_staple_bytes),
        client_cert_requested=boolean(data, "client_cert_requested"),
        legacy_versions=versions,
        connect_seconds=seconds(data, "connect_seconds"),
        handshake_seconds=seconds(data, "handshake_seconds"),
        protocol=_protocol(data),
        alt_chains=tuple(_chain(alt, certs, limits, "alt_chains") for alt in alts),
        legacy_capture="legacy_capture" in data and boolean(data, "legacy_capture"),
        group=optional_text(data, "group", _MAX_NAME) if "group" in data else None,
        signature_scheme=(
            optional_text(data, "signature_scheme", _MAX_NAME)
            if "signature_scheme" in data
            else None
        ),
        # absent from older agents' batches: proven, as every chain was before the mark existed
        key_proven=optional(data, "key_proven", bool) is not False,
    )
