"""From the inventory to findings: the glue between the store, the rules and the reports.

Theory of operation
-------------------
The findings rules (:mod:`reports.findings`) judge observations; the inventory holds them. This
module joins the two, in two layers:

* **Pure** -- :func:`to_input` turns a stored :class:`~scanner.inventory.store.EndpointRecord` into
the
  rules' :class:`~reports.findings.EndpointInput`; :func:`assess` evaluates the endpoints a
  report shows with their context (the previous leaf of each endpoint for
  ``certificate_changed``, the stored protocol probe for ``legacy_protocol``, and, for
  ``key_reuse``, the latest observation of *every* endpoint with a chain, including those the
  report does not show) and returns :class:`~reports.model.EndpointView` objects in the order
  given; :func:`select` applies the user's filters; :func:`parse_window`, :func:`parse_kinds`
  and :func:`parse_severity` read the filter options.
* **Edges** -- :func:`load_criteria` reads the config file and the CA bundles once per command;
  :func:`read_views` reads what ``certscan report`` shows; :func:`record_scan` evaluates the
  endpoints one sweep observed and applies the result to the findings lifecycle
  (:meth:`~scanner.inventory.store.Inventory.record_findings`). Each reads the inventory in a few
  bulk
  queries and does all the judging in memory, so 1,000 endpoints take well under a second.

Which endpoints a report shows: those whose chosen observation presented a chain, or whose TCP
connection was at least accepted (a port that speaks something other than TLS is worth seeing);
refused and unreachable targets are left out, or a swept /16 would list 65,536 closed ports.
Which endpoints a sweep's lifecycle covers: those the sweep observed presenting a chain. An
endpoint that did not answer this time keeps its findings open as they were (the store's rule for
"not evaluated"): a host being down does not fix its certificate.

Every chain an endpoint presented counts: the alternative chains of ``--all-certs``
(``EndpointRecord.alt_chains``) are judged with the main one (:mod:`reports.findings`), take part
in ``key_reuse``, are carried on the view, and count for ``--expiring-within``.

Findings are computed when asked, from the stored observations and the current policy, so
changing the policy changes the next report without rescanning; the stored lifecycle
(``certscan findings``) reflects the policy in force at each sweep.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from reports.findings import (
    Context,
    EndpointInput,
    EndpointKey,
    evaluate,
    key_context,
    leaf_key_peers,
)
from reports.model import EndpointView, Finding, Severity
from reports.output import ScanInfo
from reports.policy import KINDS, Policy, load_config
from reports.trust import TrustStore
from scanner.errors import UsageError
from scanner.inventory.read import CHAIN_STATUSES
from scanner.inventory.store import EndpointRecord, FindingChanges, Inventory

__all__ = [
    "Criteria",
    "ReportFilter",
    "ScanAssessment",
    "all_findings",
    "assess",
    "failing",
    "load_criteria",
    "parse_kinds",
    "parse_severity",
    "parse_window",
    "read_views",
    "record_scan",
    "reportable",
    "scan_info",
    "select",
    "to_input",
]


# --- data ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Criteria:
    """How endpoints are judged: the policy and the trust anchors, loaded once per command.

    ``config_path`` is the config file read, ``None`` when none was (all defaults).
    """

    policy: Policy
    trust: TrustStore
    config_path: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportFilter:
    """What a report keeps.

    ``severity`` keeps findings at or above it; ``kinds`` keeps findings of these kinds (empty:
    every kind). When either is set, endpoints left with no finding are dropped, so the report
    lists exactly what matched. ``expiring_within`` keeps endpoints presenting a certificate whose
    ``not_after`` is before now plus the window (already expired ones included), with all their
    findings. ``None``/empty means no filter.
    """

    severity: Severity | None = None
    kinds: frozenset[str] = frozenset()
    expiring_within: timedelta | None = None

    @property
    def narrows_findings(self) -> bool:
        return self.severity is not None or bool(self.kinds)

    def keeps(self, finding: Finding) -> bool:
        if self.severity is not None and finding.severity < self.severity:
            return False
        return not self.kinds or finding.kind in self.kinds


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanAssessment:
    """One sweep judged: the views of the endpoints it observed (as a report shows them) and
    what applying their findings did to the lifecycle."""

    views: tuple[EndpointView, ...]
    changes: FindingChanges


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


def reportable(record: EndpointRecord) -> bool:
    """Whether a report shows this observation: a chain, or at least an accepted connection."""
    return bool(record.chain) or record.connected is True


def to_input(record: EndpointRecord) -> EndpointInput:
    """The rules' view of one stored observation."""
    return EndpointInput(
        address=record.address,
        port=record.port,
        sni=record.sni,
        status=record.status,
        tls_version=record.tls_version,
        cipher=record.cipher,
        chain=record.chain,
        alt_chains=record.alt_chains,
        key_proven=not record.key_unproven,
    )


def _key(record: EndpointRecord | EndpointView) -> EndpointKey:
    return (record.address, record.port, record.sni)


def assess(
    records: Sequence[EndpointRecord],
    *,
    criteria: Criteria,
    now: datetime,
    previous: Mapping[EndpointKey, str],
    others: Sequence[EndpointRecord] = (),
) -> tuple[EndpointView, ...]:
    """Judge ``records`` (the endpoints shown) and return their views, in the same order.

    ``previous`` maps an endpoint to the leaf SHA-256 of its previous observation. ``others``
    are further observations that take part in ``key_reuse`` only (the latest observation of
    endpoints not shown); one of them naming a shown endpoint is ignored.
    """
    shown = {_key(r) for r in records}
    inputs = [to_input(r) for r in records]
    context = [to_input(r) for r in others if r.chain and _key(r) not in shown]
    peers = leaf_key_peers([i for i in (*inputs, *context) if i.chain or i.alt_chains])
    views = []
    for record, endpoint in zip(records, inputs, strict=True):
        key = endpoint.key
        probe = record.legacy_versions
        keys = key_context(endpoint, peers)
        ctx = Context(
            previous_leaf=previous.get(key),
            key_shared_with=keys.key_shared_with,
            alt_key_shared_with=keys.alt_key_shared_with,
            accepted_versions=None if probe is None else frozenset(probe),
        )
        findings = evaluate(
            endpoint, policy=criteria.policy, trust=criteria.trust, now=now, context=ctx
        )
        views.append(
            EndpointView(
                address=record.address,
                port=record.port,
                sni=record.sni,
                status=record.status,
                error=record.error,
                tls_version=record.tls_version,
                cipher=record.cipher,
                observed_at=record.observed_at,
                scan_id=record.scan_id,
                chain=record.chain,
                alt_chains=record.alt_chains,
                findings=findings,
            )
        )
    return tuple(views)


def select(
    views: Iterable[EndpointView], flt: ReportFilter, *, now: datetime
) -> tuple[EndpointView, ...]:
    """The views ``flt`` keeps (see :class:`ReportFilter`), order kept."""
    deadline = None if flt.expiring_within is None else now + flt.expiring_within
    out: list[EndpointView] = []
    for view in views:
        if deadline is not None and not any(
            c.not_after is not None and c.not_after <= deadline
            for chain in (view.chain, *view.alt_chains)
            for c in chain
        ):
            continue
        if flt.narrows_findings:
            kept = tuple(f for f in view.findings if flt.keeps(f))
            if not kept:
                continue
            if len(kept) != len(view.findings):
                view = _with_findings(view, kept)
        out.append(view)
    return tuple(out)


def _with_findings(view: EndpointView, findings: tuple[Finding, ...]) -> EndpointView:
    return replace(view, findings=findings)


def all_findings(views: Iterable[EndpointView]) -> list[Finding]:
    return [f for view in views for f in view.findings]


def failing(views: Iterable[EndpointView], threshold: Severity | None) -> bool:
    """``--fail-on``: whether any finding in ``views`` is at or above ``threshold``."""
    return threshold is not None and any(
        f.severity >= threshold for view in views for f in view.findings
    )


# --- edges -----------------------------------------------------------------------------------


def load_criteria(
    config: Path | None, ca_bundles: Sequence[Path] = (), *, env: Mapping[str, str]
) -> Criteria:
    """The config file (``--config``, ``CERTSCAN_CONFIG`` or the XDG default) and the trust
    anchors: Mozilla's roots unless the config says otherwise, the config's ``ca_bundles``, then
    ``ca_bundles`` (``--ca-bundle``). Raises :class:`UsageError` for a bad file."""
    loaded = load_config(config, env=env)
    bundles = (*loaded.ca_bundles, *ca_bundles)
    trust = TrustStore.load(bundles, mozilla=loaded.mozilla_roots)
    return Criteria(policy=loaded.policy, trust=trust, config_path=loaded.path)


def scan_info(inventory: Inventory, scan_id: int) -> ScanInfo:
    """The report header of scan ``scan_id``; :class:`UsageError` when there is no such scan."""
    run = inventory.scan(scan_id)
    if run is None:
        raise UsageError(f"--scan: inventory {inventory.label} has no scan {scan_id}")
    return ScanInfo(id=run.id, started_at=run.started_at, finished_at=run.finished_at)


def read_views(
    inventory: Inventory, *, criteria: Criteria, now: datetime, scan_id: int | None = None
) -> tuple[EndpointView, ...]:
    """What ``certscan report`` shows: the latest observation of every endpoint (or the
    observations of ``scan_id``), judged at ``now``, soonest leaf expiry first."""
    latest = inventory.latest_endpoints(include_failures=True)
    if scan_id is None:
        shown = [r for r in latest if reportable(r)]
        others: list[EndpointRecord] = []
    else:
        chosen = inventory.latest_endpoints(scan_id=scan_id, include_failures=True)
        shown = [r for r in chosen if reportable(r)]
        others = latest
    previous = inventory.previous_leaves(scan_id)
    return assess(shown, criteria=criteria, now=now, previous=previous, others=others)


def record_scan(
    inventory: Inventory, scan_id: int, *, criteria: Criteria, now: datetime
) -> ScanAssessment:
    """After a sweep: judge the endpoints scan ``scan_id`` observed (key reuse over the latest
    observation of every endpoint), and open, refresh or resolve their stored findings.

    Endpoints whose latest observation is no longer this scan's (another scanner has observed
    them since) are left to that scan.
    """
    latest = inventory.latest_endpoints(include_failures=True)
    shown = [r for r in latest if r.scan_id == scan_id and reportable(r)]
    others = [r for r in latest if r.scan_id != scan_id]
    previous = inventory.previous_leaves()
    views = assess(shown, criteria=criteria, now=now, previous=previous, others=others)
    judged = [v for v in views if v.status in CHAIN_STATUSES]
    changes = inventory.record_findings(
        scan_id, all_findings(judged), evaluated=[_key(v) for v in judged], now=now
    )
    return ScanAssessment(views=views, changes=changes)
