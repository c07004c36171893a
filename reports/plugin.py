"""The verdict of ``certscan check``: one monitoring-plugin status line from judged endpoints.

Nagios, Icinga, Naemon, Sensu and Zabbix (via its Nagios compatibility) read a plugin's first
line of stdout and its exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. The line is
``CERTSCAN <STATE> - <summary> | <perfdata>``, each perfdata item as
``label=value[unit];warn;crit;min;max``.

The state is the worst of:

* **expiry** of every certificate the endpoints presented first (their leaves; ``--all-certs``
  leaves too): fewer than ``critical_days`` left is CRITICAL, fewer than ``warning_days`` is
  WARNING, expired is CRITICAL;
* **findings**: one at or above ``critical_on`` is CRITICAL, at or above ``warning_on`` WARNING
  (``expiring`` and ``expired`` are left to the day thresholds above, which the user set);
* **reachability**: no endpoint presenting a certificate is CRITICAL (as ``check_http`` treats
  a refused connection), with the failure named.

Perfdata: ``days`` (the least time left, in days, with the thresholds), ``findings`` (count),
``endpoints`` (answering with a chain). Text from certificates and servers is escaped with
:func:`scanner.text.safe`, and ``|`` is replaced so it cannot start perfdata. Pure.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from reports.model import EndpointView
from reports.output import endpoint_label
from scanner.models import CertInfo, Severity
from scanner.text import safe

__all__ = ["CheckThresholds", "PluginState", "plugin_verdict"]

#: Finding kinds judged by the day thresholds instead of their severity.
_BY_DAYS = frozenset({"expiring", "expired"})


class PluginState(enum.IntEnum):
    """Monitoring-plugin states, valued as their exit codes."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckThresholds:
    """``-w``/``-c`` in days, and the finding severities that make WARNING/CRITICAL."""

    warning_days: float = 30.0
    critical_days: float = 7.0
    warning_on: Severity = Severity.HIGH
    critical_on: Severity = Severity.CRITICAL


def _text(value: object, limit: int = 120) -> str:
    return safe(value, limit).replace("|", "/")


def _leaves(view: EndpointView) -> list[CertInfo]:
    chains = (view.chain, *view.alt_chains)
    return [chain[0] for chain in chains if chain]


def plugin_verdict(
    views: tuple[EndpointView, ...],
    *,
    target: str,
    now: datetime,
    limits: CheckThresholds,
    outcomes: Mapping[str, int] | None = None,
) -> tuple[PluginState, str]:
    """The state and the one status line for ``views`` (the endpoints of ``target``);
    ``outcomes`` counts the sweep's targets by status (it names a refused connection, which
    leaves no endpoint to view)."""
    up = [v for v in views if v.chain]
    if not up:
        why = ", ".join(f"{endpoint_label(v.address, v.port, v.sni)} {v.status}" for v in views)
        if not why and outcomes:
            why = ", ".join(f"{status} x{n}" for status, n in sorted(outcomes.items()))
        shown = _text(why or "no answer", 200)
        line = f"CERTSCAN CRITICAL - {_text(target)}: no certificate ({shown})"
        return PluginState.CRITICAL, line + " | endpoints=0;;;0;"
    state = PluginState.OK
    reasons: list[str] = []
    soonest: tuple[float, CertInfo, EndpointView] | None = None
    for view in up:
        for leaf in _leaves(view):
            if leaf.not_after is None:
                continue
            days = (leaf.not_after - now).total_seconds() / 86400
            if soonest is None or days < soonest[0]:
                soonest = (days, leaf, view)
    if soonest is not None:
        days, leaf, view = soonest
        where = endpoint_label(view.address, view.port, view.sni)
        name = leaf.subject_cn or leaf.sha256[:16]
        assert leaf.not_after is not None
        when = leaf.not_after.strftime("%Y-%m-%d %H:%M UTC")
        if days < 0:
            state = PluginState.CRITICAL
            reasons.append(f"{_text(name)} on {_text(where)} expired {when}")
        else:
            if days < limits.critical_days:
                state = PluginState.CRITICAL
            elif days < limits.warning_days:
                state = max(state, PluginState.WARNING)
            reasons.append(f"{_text(name)} on {_text(where)} expires {when} ({days:.1f} days)")
    findings = [f for v in up for f in v.findings]
    counted = [f for f in findings if f.kind not in _BY_DAYS]
    for finding in sorted(counted, key=lambda f: f.severity, reverse=True):
        if finding.severity >= limits.critical_on:
            state = PluginState.CRITICAL
        elif finding.severity >= limits.warning_on:
            state = max(state, PluginState.WARNING)
        else:
            continue
        if len(reasons) < 4:
            reasons.append(
                f"{finding.kind} ({finding.severity.label}): {_text(finding.message, 100)}"
            )
    if len(counted) and len(reasons) >= 4:
        reasons.append(f"{len(counted)} findings in all")
    perf = [
        f"days={soonest[0]:.2f};{limits.warning_days:g};{limits.critical_days:g};;"
        if soonest is not None
        else "",
        f"findings={len(findings)};;;0;",
        f"endpoints={len(up)};;;0;",
    ]
    summary = "; ".join(reasons) or f"{_text(target)}: no certificate dates"
    line = f"CERTSCAN {state.name} - {summary} | {' '.join(p for p in perf if p)}"
    return state, line
