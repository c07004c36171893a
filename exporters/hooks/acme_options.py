"""The ``acme`` hook's own keys, validated (pure): :class:`AcmeOptions` and
:func:`parse_acme_options`.

Names are the operator's: ``names`` (each passing :func:`exporters.hooks.names.check`), or else
the scanned certificate's SANs that match the hook's ``match_names`` globs (passed in by
:mod:`exporters.hooks.config`); a hook with neither is refused when the config loads, so a
scanned server can never choose what is ordered. ``allow_wildcards`` lets ``*.`` names through.
The EAB HMAC key is read from the environment variable ``eab_hmac_key_env`` names, at run time;
it is never part of the options' repr, a result, a log line or the database.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from exporters.hooks.names import MAX_NAMES, check, printable
from scanner.errors import UsageError

KeyType = Literal["ec", "rsa"]
ChallengeKind = Literal["http-01", "dns-01"]

__all__ = ["AcmeOptions", "ChallengeKind", "KeyType", "parse_acme_options"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AcmeOptions:
    """One ``acme`` hook's settings, validated. Paths are absolute or relative to the cwd."""

    directory: str  # the CA's directory URL (https)
    account_key: Path  # PEM; created (RSA 2048, 0600) when missing
    contact: str | None = None  # e-mail for the account, None for none
    names: tuple[str, ...] = ()  # names to order; () = the SANs matching match_names
    match_names: tuple[str, ...] = ()  # the hook's lowercase globs; () with names only
    allow_wildcards: bool = False  # "*." names may be ordered
    key_type: KeyType = "ec"
    key_path: Path
    cert_path: Path
    chain_path: Path | None = None  # intermediates only; None = not written
    fullchain_path: Path | None = None  # leaf + intermediates; None = not written
    challenge: ChallengeKind = "http-01"
    listen: tuple[str, int] | None = None  # http-01 served by certscan on (address, port)
    challenge_command: tuple[str, ...] = ()  # argv run once per challenge instead of `listen`
    cleanup_command: tuple[str, ...] = ()  # argv run once per challenge afterwards, optional
    deploy: tuple[str, ...] = ()  # argv run after the files are written, optional
    ca_bundle: Path | None = None  # CA certificates for the ACME server's TLS; None = system
    timeout: float = 120.0  # the whole order, seconds
    command_timeout: float = 60.0  # each challenge/cleanup/deploy command, seconds
    eab_kid: str | None = None  # External Account Binding key id; None = no EAB
    eab_hmac_key_env: str | None = field(default=None)  # the variable holding the HMAC key
    profile: str | None = None  # an ACME profile the directory must list; None = the default
    ari: bool = True  # ask the CA's renewalInfo for the window and send ``replaces``


def _argv(value: Any, key: str, source: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
        raise UsageError(f"{source}.{key}: must be a non-empty list of strings (an argv)")
    return tuple(value)


def _text(table: Mapping[str, Any], key: str, source: str, *, required: bool = False) -> str | None:
    value = table.get(key)
    if value is None:
        if required:
            raise UsageError(f"{source}.{key}: required")
        return None
    if not isinstance(value, str) or not value:
        raise UsageError(f"{source}.{key}: must be a non-empty string")
    return value


def _seconds(table: Mapping[str, Any], key: str, source: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86400:
        raise UsageError(f"{source}.{key}: must be a positive number of seconds (at most a day)")
    return float(value)


def _bool(table: Mapping[str, Any], key: str, source: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise UsageError(f"{source}.{key}: must be true or false")
    return value


_KEYS = frozenset(
    (
        *("directory", "account_key", "contact", "names", "key_type", "key", "cert", "chain"),
        *("fullchain", "challenge", "listen", "challenge_command", "cleanup_command", "deploy"),
        *("ca_bundle", "timeout", "command_timeout", "match_names", "allow_wildcards"),
        *("eab_kid", "eab_hmac_key_env", "profile", "ari"),
    )
)


def _names(table: Mapping[str, Any], source: str, wildcards: bool) -> tuple[str, ...]:
    names = table.get("names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise UsageError(f"{source}.names: must be a list of DNS names")
    if len(names) > MAX_NAMES:
        raise UsageError(f"{source}.names: at most {MAX_NAMES} names")
    ips = [n for n in names if _is_ip(n)]
    if ips and len(ips) != len(names):
        raise UsageError(f"{source}.names: IP addresses and DNS names cannot share a certificate")
    for name in names:
        why = None if _is_ip(name) else check(name, wildcard=wildcards)
        if why is not None:
            raise UsageError(f"{source}.names: {printable(name, 60)}: {why}")
    return tuple(dict.fromkeys(str(ipaddress.ip_address(n)) if _is_ip(n) else n for n in names))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_acme_options(table: Mapping[str, Any], source: str) -> AcmeOptions:
    """Validate an ``[hooks.NAME]`` table of kind ``acme``; ``source`` names it in errors."""
    unknown = sorted(set(table) - _KEYS - {"kind"})
    if unknown:
        raise UsageError(f"{source}.{unknown[0]}: unknown acme key")
    directory = _text(table, "directory", source, required=True)
    assert directory is not None
    if not directory.startswith("https://"):
        raise UsageError(f"{source}.directory: must be an https:// URL")
    wildcards = _bool(table, "allow_wildcards", source, False)
    names = _names(table, source, wildcards)
    globs = table.get("match_names", [])
    if not isinstance(globs, list) or not all(isinstance(g, str) and g for g in globs):
        raise UsageError(f"{source}.match_names: must be a list of globs")
    if not names and not globs:
        raise UsageError(
            f"{source}.names: give names (or match_names): an acme hook orders only names "
            "the config names, never whatever a scanned certificate lists"
        )
    key_type = table.get("key_type", "ec")
    if key_type not in ("ec", "rsa"):
        raise UsageError(f"{source}.key_type: must be 'ec' or 'rsa'")
    challenge = table.get("challenge", "http-01")
    if challenge not in ("http-01", "dns-01"):
        raise UsageError(f"{source}.challenge: must be 'http-01' or 'dns-01'")
    if challenge == "dns-01" and any(_is_ip(n) for n in names):
        raise UsageError(f"{source}.challenge: IP identifiers are validated by http-01 only")
    listen: tuple[str, int] | None = None
    if "listen" in table:
        raw = _text(table, "listen", source) or ""
        host, _, port = raw.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(f"{source}.listen: must be 'address:port'")
        listen = (host.strip("[]"), int(port))
    command = (
        _argv(table["challenge_command"], "challenge_command", source)
        if "challenge_command" in table
        else ()
    )
    if (listen is None) == (not command):
        raise UsageError(f"{source}.listen: give exactly one of listen or challenge_command")
    if challenge == "dns-01" and listen is not None:
        raise UsageError(f"{source}.challenge: dns-01 needs challenge_command, not listen")
    eab_kid = _text(table, "eab_kid", source)
    eab_env = _text(table, "eab_hmac_key_env", source)
    if (eab_kid is None) != (eab_env is None):
        raise UsageError(f"{source}.eab_kid: give both eab_kid and eab_hmac_key_env, or neither")
    if "eab_hmac_key" in table:
        raise UsageError(f"{source}.eab_hmac_key: put the key in an environment variable")

    def path(key: str, required: bool = False) -> Path | None:
        value = _text(table, key, source, required=required)
        return Path(value) if value is not None else None

    key_path, cert_path = path("key", required=True), path("cert", required=True)
    account_key = path("account_key", required=True)
    assert key_path is not None
    assert cert_path is not None
    assert account_key is not None
    return AcmeOptions(
        directory=directory,
        account_key=account_key,
        contact=_text(table, "contact", source),
        names=names,
        match_names=tuple(g.lower() for g in globs),
        allow_wildcards=wildcards,
        key_type=key_type,
        key_path=key_path,
        cert_path=cert_path,
        chain_path=path("chain"),
        fullchain_path=path("fullchain"),
        challenge=challenge,
        listen=listen,
        challenge_command=command,
        cleanup_command=(
            _argv(table["cleanup_command"], "cleanup_command", source)
            if "cleanup_command" in table
            else ()
        ),
        deploy=_argv(table["deploy"], "deploy", source) if "deploy" in table else (),
        ca_bundle=path("ca_bundle"),
        timeout=_seconds(table, "timeout", source, 120.0),
        command_timeout=_seconds(table, "command_timeout", source, 60.0),
        eab_kid=eab_kid,
        eab_hmac_key_env=eab_env,
        profile=_text(table, "profile", source),
        ari=_bool(table, "ari", source, True),
    )
