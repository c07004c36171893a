"""What the operator asked the judgement to use, parsed and checked before any work: the policy
and trust anchors (:class:`Criteria`, from the config file and ``--ca-bundle``), what a report
keeps (:class:`ReportFilter`) and the option values behind them (durations, severities,
finding kinds). No inventory here: ``sweep --dry-run`` and usage errors stop before
:mod:`reports.assess`, the findings engine, is loaded."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from reports.policy import KINDS, Policy, load_config
from scanner.errors import UsageError
from scanner.models import Finding, Severity

if TYPE_CHECKING:
    from reports.owners import Owners
    from reports.trust import TrustStore

__all__ = [
    "Criteria",
    "ReportFilter",
    "load_criteria",
    "parse_kinds",
    "parse_severity",
    "parse_window",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Criteria:
    """How endpoints are judged: the policy and the trust anchors, loaded once per command.

    ``config_path`` is the config file read, ``None`` when none was (all defaults).
    """

    policy: Policy
    trust: TrustStore
    config_path: Path | None = None
    owners: Owners = field(default_factory=lambda: _no_owners())


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportFilter:
    """What a report keeps.

    ``severity`` keeps findings at or above it; ``kinds`` keeps findings of these kinds (empty:
    every kind). When either is set, endpoints left with no finding are dropped, so the report
    lists exactly what matched. ``expiring_within`` keeps endpoints presenting a certificate whose
    ``not_after`` is before now plus the window (already expired ones included), with all their
    findings. ``owners`` keeps endpoints owned by one of these owners (``--owner``).
    ``None``/empty means no filter.
    """

    severity: Severity | None = None
    kinds: frozenset[str] = frozenset()
    expiring_within: timedelta | None = None
    owners: frozenset[str] = frozenset()

    @property
    def narrows_findings(self) -> bool:
        return self.severity is not None or bool(self.kinds)

    def keeps(self, finding: Finding) -> bool:
        if self.severity is not None and finding.severity < self.severity:
            return False
        return not self.kinds or finding.kind in self.kinds


# --- pure: options ---------------------------------------------------------------------------

_WINDOW = re.compile(r"(\d{1,6})\s*([hdw])", re.IGNORECASE)
_UNIT_HOURS = {"h": 1, "d": 24, "w": 24 * 7}
_LONGEST_WINDOW = timedelta(days=100 * 366)  # now + window must stay a valid datetime


def parse_window(text: str, *, option: str = "--expiring-within") -> timedelta:
    """``30d``, ``12h``, ``2w`` as a duration; :class:`UsageError` for anything else."""
    match = _WINDOW.fullmatch(text.strip())
    if match is None:
        raise UsageError(
            f"{option}: expected a duration such as 30d, 12h or 2w, got {_shown(text)}"
        )
    window = timedelta(hours=int(match[1]) * _UNIT_HOURS[match[2].lower()])
    if window > _LONGEST_WINDOW:
        raise UsageError(f"{option}: at most {_LONGEST_WINDOW.days} days, got {_shown(text)}")
    return window


def parse_severity(text: str, *, option: str) -> Severity:
    """A severity name (``critical`` ... ``info``, any case); :class:`UsageError` otherwise."""
    try:
        return Severity.parse(text)
    except ValueError:
        names = ", ".join(s.label for s in sorted(Severity, reverse=True))
        raise UsageError(f"{option}: expected one of {names}, got {_shown(text)}") from None


def parse_kinds(values: Iterable[str], *, option: str = "--kind") -> frozenset[str]:
    """Finding kinds from repeated and/or comma-separated values; unknown ones are an error."""
    kinds: set[str] = set()
    for value in values:
        for part in value.split(","):
            kind = part.strip().lower()
            if not kind:
                continue
            if kind not in KINDS:
                close = difflib.get_close_matches(kind, KINDS, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(KINDS)})"
                raise UsageError(f"{option}: unknown finding kind {_shown(part)}{hint}")
            kinds.add(kind)
    return frozenset(kinds)


def _shown(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= 60 else shown[:57] + "..."


# --- pure: judging ---------------------------------------------------------------------------


def load_criteria(
    config: Path | None, ca_bundles: Sequence[Path] = (), *, env: Mapping[str, str]
) -> Criteria:
    """The config file (``--config``, ``CERTSCAN_CONFIG`` or the XDG default) and the trust
    anchors: Mozilla's roots unless the config says otherwise, the config's ``ca_bundles``, then
    ``ca_bundles`` (``--ca-bundle``). Raises :class:`UsageError` for a bad file."""
    from reports.trust import TrustStore

    loaded = load_config(config, env=env)
    bundles = (*loaded.ca_bundles, *ca_bundles)
    trust = TrustStore.load(bundles, mozilla=loaded.mozilla_roots)
    from reports.owners import parse_owners  # reads the inventory's owner records' types

    owners = parse_owners(loaded.sections.get("owners"), source=str(loaded.path))
    return Criteria(policy=loaded.policy, trust=trust, config_path=loaded.path, owners=owners)


def _no_owners() -> Owners:
    from reports.owners import Owners

    return Owners()
