"""The findings policy (thresholds, enabled kinds, severity overrides) and the TOML config file.

Which file is read
------------------
:func:`load_config` reads, in this order, the first that is given:

1. ``--config PATH`` (the ``path`` argument);
2. ``CERTSCAN_CONFIG`` in the environment (ignored when empty);
3. ``$XDG_CONFIG_HOME/certscan/config.toml`` (``~/.config/certscan/config.toml`` when
   ``XDG_CONFIG_HOME`` is unset or not absolute).

A missing file at the default location means "all defaults"; a missing file named by the user
(1 or 2) is an error. Every error -- unreadable file, invalid TOML, unknown section or key, wrong
type or range -- is a :class:`scanner.errors.UsageError` whose one-line message names the file
and the dotted key, e.g. ``config.toml: policy.expiring_high_days: expected a whole number of days,
got 'x'``.

The file
--------
::

    [policy]
    expiring_high_days = 30        # "expiring" is high this many days before not_after ...
    expiring_critical_days = 7     # ... and critical this many days before
    short_lived_fraction = 0.3333  # for short-lived certificates: high in the last third of life
    max_leaf_validity_days = 398   # "long_validity" above this (default: the CA/B Forum limit
                                   # at the leaf's notBefore: 398, 200, 100, then 47 days)
    expiring_high_fraction = 0.25  # optional: high in the last quarter of any lifetime
    min_rsa_bits = 2048            # "weak_key" below this (RSA and DSA)
    min_ec_bits = 256              # "weak_key" below this (EC)
    enabled = ["expired", "expiring"]   # only these kinds (default: every kind)
    disabled = ["long_validity"]        # never these kinds
    [policy.severity]              # override the severity of a kind
    hostname_mismatch = "medium"

    [trust]
    ca_bundles = ["private-root.pem"]   # PEM files of extra trusted roots, relative to this file
    mozilla_roots = true                # false: trust only the ca_bundles

Sections reserved for later features (:data:`RESERVED_SECTIONS`: ``sweep``, ``serve``, ``jobs``,
``hooks``, ``prometheus``) are accepted unread and kept raw in :attr:`Config.sections`; any other
top-level key is an error.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from scanner.errors import UsageError
from scanner.models import Severity

__all__ = [
    "EXTERNAL_KINDS",
    "KINDS",
    "RESERVED_SECTIONS",
    "Config",
    "Policy",
    "config_from_mapping",
    "default_config_path",
    "load_config",
]

#: Every finding kind, in the order the findings engine checks them.
KINDS: Final[tuple[str, ...]] = (
    "unparsable_certificate",
    "expired",
    "expiring",
    "not_yet_valid",
    "self_signed",
    "untrusted_root",
    "malformed_certificate",
    "incomplete_chain",
    "chain_order",
    "extra_certificate",
    "weak_key",
    "weak_signature",
    "long_validity",
    "no_san",
    "hostname_mismatch",
    "key_reuse",
    "legacy_protocol",
    "weak_cipher",
    "revoked",
    "ocsp_staple_stale",
    "ocsp_staple_mismatch",
    "must_staple_missing",
    "certificate_changed",
    "material_change",
    "certificate_regressed",
    "fleet_inconsistent",
    "renews_late",
    "renewal_not_observed",
    "unowned",
    "file_not_deployed",
    "no_pq_key_exchange",
)

#: Finding kinds recorded outside the rules: ``renewal_not_deployed`` (renewal verification,
#: ``exporters.hooks.verify``) and ``ca_requests_early_renewal`` (a CA's ARI window).
EXTERNAL_KINDS: Final[tuple[str, ...]] = ("renewal_not_deployed", "ca_requests_early_renewal")

#: Top-level config sections kept raw for features that read them later.
RESERVED_SECTIONS: Final[tuple[str, ...]] = (
    "sweep",
    "serve",
    "jobs",
    "hooks",
    "prometheus",
    "owners",
    "ari",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """Thresholds and switches of the findings rules. The defaults follow the issue.

    ``expiring`` is high from ``expiring_high_days`` before ``not_after`` and critical from
    ``expiring_critical_days``. A certificate is *short-lived* when its lifetime is shorter than
    ``expiring_high_days / short_lived_fraction`` (90 days by default); both windows then shrink
    in proportion to the lifetime, so ``expiring`` turns high in the last ``short_lived_fraction``
    of its life (a 47-day certificate: high from 15.7 days, critical from 3.7 days before).

    ``enabled`` is the set of kinds to report (``None``: every kind); ``disabled`` is removed from
    it. ``severities`` replaces the computed severity of a kind wholesale (also the graded ones).
    """

    expiring_high_days: int = 30
    expiring_critical_days: int = 7
    short_lived_fraction: float = 1 / 3
    #: ``None``: the CA/Browser Forum limit in force at each leaf's notBefore
    #: (:func:`reports.validity.max_validity_days`); a number overrides it for every leaf.
    max_leaf_validity_days: int | None = None
    #: ``None``: the day windows above. A fraction (0 < f <= 1): ``expiring`` is high once less
    #: than this fraction of the lifetime is left, for every lifetime (critical is unchanged).
    expiring_high_fraction: float | None = None
    min_rsa_bits: int = 2048  # RSA and DSA keys
    min_ec_bits: int = 256
    enabled: frozenset[str] | None = None
    disabled: frozenset[str] = frozenset()
    severities: Mapping[str, Severity] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem is not None:
            raise ValueError(problem)
        object.__setattr__(self, "severities", MappingProxyType(dict(self.severities)))

    def _problem(self) -> str | None:
        """``"field: reason"`` for the first invalid field, ``None`` when all are valid."""
        if self.expiring_high_days < 0:
            return f"expiring_high_days: must not be negative, got {self.expiring_high_days}"
        if not 0 <= self.expiring_critical_days <= self.expiring_high_days:
            return (
                "expiring_critical_days: must be between 0 and expiring_high_days "
                f"({self.expiring_high_days}), got {self.expiring_critical_days}"
            )
        if not 0 < self.short_lived_fraction <= 1:
            return (
                "short_lived_fraction: must be more than 0 and at most 1, "
                f"got {self.short_lived_fraction}"
            )
        if self.expiring_high_fraction is not None and not 0 < self.expiring_high_fraction <= 1:
            return (
                "expiring_high_fraction: must be more than 0 and at most 1, "
                f"got {self.expiring_high_fraction}"
            )
        if self.max_leaf_validity_days is not None and self.max_leaf_validity_days < 1:
            return f"max_leaf_validity_days: must be at least 1, got {self.max_leaf_validity_days}"
        for name in ("min_rsa_bits", "min_ec_bits"):
            if getattr(self, name) < 0:
                return f"{name}: must not be negative, got {getattr(self, name)}"
        for name, kinds in (
            ("enabled", self.enabled or ()),
            ("disabled", self.disabled),
            ("severity", self.severities),
        ):
            for kind in kinds:
                if kind not in KINDS:
                    return f"{name}: {_unknown(kind, KINDS, 'finding kind')}"
        return None

    def is_enabled(self, kind: str) -> bool:
        """Whether findings of ``kind`` are reported."""
        return (self.enabled is None or kind in self.enabled) and kind not in self.disabled

    def severity_of(self, kind: str, computed: Severity) -> Severity:
        """The severity for ``kind``: the override when one is set, else ``computed``."""
        return self.severities.get(kind, computed)


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """A config file, read and validated.

    ``path`` is the file read, ``None`` when none was (all defaults). ``ca_bundles`` are absolute
    or relative to the working directory (relative entries in the file are resolved against the
    file's directory). ``sections`` holds the reserved sections verbatim, keyed by name.
    """

    path: Path | None = None
    policy: Policy = field(default_factory=Policy)
    ca_bundles: tuple[Path, ...] = ()
    mozilla_roots: bool = True
    sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)


def default_config_path(env: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/certscan/config.toml``, with ``~/.config`` when that is unset."""
    xdg = env.get("XDG_CONFIG_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "certscan" / "config.toml"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".config" / "certscan" / "config.toml"


def load_config(path: Path | None, *, env: Mapping[str, str]) -> Config:
    """Read the config file chosen as the module docstring says; defaults when there is none."""
    if path is None and env.get("CERTSCAN_CONFIG"):
        path, origin = Path(env["CERTSCAN_CONFIG"]), " (from CERTSCAN_CONFIG)"
    else:
        origin = ""
    explicit = path is not None
    chosen = path if path is not None else default_config_path(env)
    try:
        raw = chosen.read_bytes()
    except FileNotFoundError:
        if not explicit:
            return Config()
        raise UsageError(f"{chosen}: config file not found{origin}") from None
    except OSError as exc:
        raise UsageError(f"{chosen}: cannot read config file: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{chosen}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{chosen}: invalid TOML: {exc}") from None
    return config_from_mapping(data, source=str(chosen), base=chosen.parent, path=chosen)


def config_from_mapping(
    data: Mapping[str, Any], *, source: str, base: Path, path: Path | None = None
) -> Config:
    """Validate parsed TOML ``data``; errors name ``source`` (the file) and the dotted key.

    Relative ``trust.ca_bundles`` entries are resolved against ``base``.
    """
    reader = _Reader(source)
    policy = Policy()
    bundles: tuple[Path, ...] = ()
    mozilla = True
    sections: dict[str, Mapping[str, Any]] = {}
    for key, value in data.items():
        if key == "policy":
            policy = reader.policy(reader.table(("policy",), value))
        elif key == "trust":
            bundles, mozilla = reader.trust(reader.table(("trust",), value), base)
        elif key in RESERVED_SECTIONS:
            sections[key] = MappingProxyType(dict(reader.table((key,), value)))
        else:
            known = ("policy", "trust", *RESERVED_SECTIONS)
            reader.fail((key,), _unknown(key, known, "section"))
    return Config(
        path=path,
        policy=policy,
        ca_bundles=bundles,
        mozilla_roots=mozilla,
        sections=MappingProxyType(sections),
    )


# --- validation ------------------------------------------------------------------------------

_POLICY_INTS: Final[Mapping[str, str]] = {
    "expiring_high_days": "days",
    "expiring_critical_days": "days",
    "max_leaf_validity_days": "days",
    "min_rsa_bits": "bits",
    "min_ec_bits": "bits",
}
_POLICY_KEYS: Final[tuple[str, ...]] = (
    *_POLICY_INTS,
    "short_lived_fraction",
    "expiring_high_fraction",
    "enabled",
    "disabled",
    "severity",
)
_TRUST_KEYS: Final[tuple[str, ...]] = ("ca_bundles", "mozilla_roots")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class _Reader:
    """Type checks with messages of the form ``source: dotted.key: problem``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: tuple[str, ...], problem: str) -> None:
        dotted = ".".join(k if _BARE_KEY.fullmatch(k) else json.dumps(k) for k in where)
        raise UsageError(f"{self.source}: {dotted}: {problem}")

    def table(self, where: tuple[str, ...], value: object) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, f"expected a table, got {_show(value)}")
        assert isinstance(value, dict)
        return value

    def policy(self, table: Mapping[str, Any]) -> Policy:
        values: dict[str, Any] = {}
        for key, value in table.items():
            where = ("policy", key)
            if key in _POLICY_INTS:
                if isinstance(value, bool) or not isinstance(value, int):
                    self.fail(
                        where, f"expected a whole number of {_POLICY_INTS[key]}, got {_show(value)}"
                    )
                values[key] = value
            elif key in ("short_lived_fraction", "expiring_high_fraction"):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    self.fail(where, f"expected a number between 0 and 1, got {_show(value)}")
                values[key] = float(value)
            elif key in ("enabled", "disabled"):
                values[key] = self.kinds(where, value)
            elif key == "severity":
                values["severities"] = self.severities(self.table(where, value))
            else:
                self.fail(where, _unknown(key, _POLICY_KEYS, "key"))
        try:
            return Policy(**values)
        except ValueError as exc:  # a range or cross-field problem: "field: reason"
            name, _, problem = str(exc).partition(": ")
            self.fail(("policy", name), problem)
            raise AssertionError("unreachable") from exc

    def kinds(self, where: tuple[str, ...], value: object) -> frozenset[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(where, f"expected a list of finding kinds, got {_show(value)}")
        assert isinstance(value, list)
        for kind in value:
            if kind not in KINDS:
                self.fail(where, _unknown(kind, KINDS, "finding kind"))
        return frozenset(value)

    def severities(self, table: Mapping[str, Any]) -> dict[str, Severity]:
        out: dict[str, Severity] = {}
        for kind, value in table.items():
            where = ("policy", "severity", kind)
            if kind not in KINDS:
                self.fail(where, _unknown(kind, KINDS, "finding kind"))
            if not isinstance(value, str):
                self.fail(where, f"expected a severity name, got {_show(value)}")
            try:
                out[kind] = Severity.parse(value)
            except ValueError as exc:
                self.fail(where, str(exc))
        return out

    def trust(self, table: Mapping[str, Any], base: Path) -> tuple[tuple[Path, ...], bool]:
        bundles: tuple[Path, ...] = ()
        mozilla = True
        for key, value in table.items():
            where = ("trust", key)
            if key == "ca_bundles":
                if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                    self.fail(where, f"expected a list of PEM file paths, got {_show(value)}")
                bundles = tuple(base / Path(v).expanduser() for v in value)
            elif key == "mozilla_roots":
                if not isinstance(value, bool):
                    self.fail(where, f"expected true or false, got {_show(value)}")
                mozilla = value
            else:
                self.fail(where, _unknown(key, _TRUST_KEYS, "key"))
        return bundles, mozilla


def _unknown(name: str, known: tuple[str, ...], what: str) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})"
    return f"unknown {what} {_show(name)}{hint}"


def _show(value: object) -> str:
    """A TOML-ish rendering of a config value for a one-line message, shortened."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dict):
        text = "a table"
    else:
        text = repr(value)  # repr escapes newlines and other control characters
    return text if len(text) <= 60 else text[:57] + "..."
