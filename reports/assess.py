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

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from reports.context import History, read_history, record_owners
from reports.criteria import (
    Criteria,
    ReportFilter,
    load_criteria,
    parse_kinds,
    parse_severity,
    parse_window,
)
from reports.deployed import undeployed
from reports.findings import evaluate, key_context, leaf_key_peers, peers_from_rows
from reports.fleet import fleet_inconsistencies
from reports.model import Context, EndpointInput, EndpointKey, EndpointView, Proposal
from reports.output import FindingsTally, ScanInfo
from reports.owners import unowned
from reports.renewal import automation, renewals
from scanner.errors import UsageError
from scanner.inventory.estate import LeafRow, san_dns
from scanner.inventory.read import CHAIN_STATUSES, expiry_order
from scanner.inventory.store import EndpointRecord, FindingChanges, Inventory
from scanner.models import CertInfo, Finding, Severity

__all__ = [
    "Criteria",
    "Estate",
    "History",
    "ReportFilter",
    "ScanAssessment",
    "all_findings",
    "assess",
    "failing",
    "iter_views",
    "load_criteria",
    "parse_kinds",
    "parse_severity",
    "parse_window",
    "read_history",
    "read_views",
    "record_owners",
    "record_scan",
    "reportable",
    "scan_info",
    "select",
    "to_input",
]


# --- data ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanAssessment:
    """One sweep judged: the views of the endpoints it observed (as a report shows them) and
    what applying their findings did to the lifecycle."""

    views: tuple[EndpointView, ...]  # empty unless asked for (``keep_views``)
    changes: FindingChanges
    tally: FindingsTally = field(default_factory=FindingsTally)


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
        ocsp_staple=record.ocsp_staple,
        group=record.group,
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
    history: History | None = None,
) -> tuple[EndpointView, ...]:
    """Judge ``records`` (the endpoints shown) and return their views, in the same order.

    ``previous`` maps an endpoint to the leaf SHA-256 of its previous observation. ``others``
    are further observations that take part in ``key_reuse`` and ``fleet_inconsistent`` only
    (the latest observation of endpoints not shown); one of them naming a shown endpoint is
    ignored. ``history`` holds the leaf runs and previous chains for the change and renewal
    rules (``None``: only the previous SHA-256 is known).
    """
    shown = {_key(r) for r in records}
    inputs = [to_input(r) for r in records]
    context = [to_input(r) for r in others if r.chain and _key(r) not in shown]
    peers = leaf_key_peers([i for i in (*inputs, *context) if i.chain or i.alt_chains])
    everyone = (*inputs, *context)
    estate = Estate(
        peers=peers,
        fleet=fleet_inconsistencies(everyone, now=now, policy=criteria.policy),
        on_disk=undeployed(everyone),
    )
    return _judge_all(
        records, criteria=criteria, now=now, previous=previous, estate=estate, history=history
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Estate:
    """What judging one endpoint needs to know about all the others: the key-reuse peers, the
    fleet inconsistencies and the certificates on disk that no endpoint serves, by endpoint."""

    peers: Mapping[tuple[EndpointKey, str], frozenset[EndpointKey]]
    fleet: Mapping[EndpointKey, Proposal]
    on_disk: Mapping[EndpointKey, Proposal]


def _judge_all(
    records: Sequence[EndpointRecord],
    *,
    criteria: Criteria,
    now: datetime,
    previous: Mapping[EndpointKey, str],
    estate: Estate,
    history: History | None = None,
) -> tuple[EndpointView, ...]:
    """The views of ``records``, judged in the context of the ``estate``, in order."""
    history = history or History()
    views = []
    for record in records:
        endpoint = to_input(record)
        key = endpoint.key
        probe = record.legacy_versions
        keys = key_context(endpoint, estate.peers)
        owned = criteria.owners.assign(record.address, record.port, record.sni)
        extra = (estate.fleet.get(key), estate.on_disk.get(key), unowned(criteria.owners, owned))
        ctx = Context(
            previous_leaf=previous.get(key),
            key_shared_with=keys.key_shared_with,
            alt_key_shared_with=keys.alt_key_shared_with,
            accepted_versions=None if probe is None else frozenset(probe),
            previous_chain=history.previous_chains.get(key, ()),
            runs=history.runs.get(key, ()),
            extra=tuple(p for p in extra if p is not None),
        )
        findings = evaluate(
            endpoint, policy=criteria.policy, trust=criteria.trust, now=now, context=ctx
        )
        runs = history.runs.get(key)
        behaviour = None if runs is None else automation(renewals(runs))
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
                automation=None if behaviour is None else behaviour.label,
                lead_days=() if behaviour is None else behaviour.lead_days,
                owner=None if owned is None else owned.owner,
                environment=None if owned is None else owned.environment,
                tags=() if owned is None else owned.tags,
                legacy_capture=record.legacy_capture,
                group=record.group,
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
        if flt.owners and view.owner not in flt.owners:
            continue
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
    history = read_history(inventory, shown, previous, scan_id=scan_id)
    return assess(
        shown, criteria=criteria, now=now, previous=previous, others=others, history=history
    )


def iter_views(
    inventory: Inventory,
    *,
    criteria: Criteria,
    now: datetime,
    scan_id: int | None = None,
    batch: int = 1000,
) -> Iterator[list[EndpointView]]:
    """:func:`read_views` a batch at a time: the same views with the same findings, in the same
    order (soonest leaf expiry first), at most ``batch`` per list.

    Without ``scan_id`` one batch of chains is in memory at a time: the report's order is read
    first as bare observation ids (8 bytes an endpoint), the estate-wide context as bare rows
    (as :func:`record_scan` does), then each batch's records, previous leaves and leaf runs.
    Each batch is read in its own snapshot, so a sweep writing meanwhile can show in later
    batches. With ``scan_id`` the scan's views are judged at once (:func:`read_views`: its
    key-reuse context mixes the scan's observations with the latest of the others) and handed
    out in batches: memory grows with the size of that scan.
    """
    if scan_id is not None:
        views = read_views(inventory, criteria=criteria, now=now, scan_id=scan_id)
        for start in range(0, len(views), batch):
            yield list(views[start : start + batch])
        return
    order = inventory.report_order()
    if not order:
        return
    estate = _estate(inventory, criteria=criteria, now=now)
    for start in range(0, len(order), batch):
        records = inventory.observations(order[start : start + batch])
        ids = [r.endpoint_id for r in records if r.endpoint_id is not None]
        previous = inventory.previous_leaves_of(ids)
        history = read_history(inventory, records, previous)
        yield list(
            _judge_all(
                records,
                criteria=criteria,
                now=now,
                previous=previous,
                estate=estate,
                history=history,
            )
        )


#: Endpoints judged per batch after a sweep: the chains of one batch are in memory at a time.
JUDGE_BATCH = 1000


def record_scan(
    inventory: Inventory,
    scan_id: int,
    *,
    criteria: Criteria,
    now: datetime,
    keep_views: bool = True,
    batch: int = JUDGE_BATCH,
) -> ScanAssessment:
    """After a sweep: judge the endpoints scan ``scan_id`` observed (key reuse over the latest
    observation of every endpoint), and open, refresh or resolve their stored findings.

    Endpoints whose latest observation is no longer this scan's (another scanner has observed
    them since) are left to that scan. They are judged ``batch`` at a time, each batch's
    findings recorded in its own transaction, with the key-reuse peers read once beforehand as
    bare (endpoint, leaf, key) rows: memory stays flat in the size of the sweep. Without
    ``keep_views`` only the :class:`~reports.output.FindingsTally` is kept (a summary and
    ``--fail-on`` need no more); with it the views come back soonest expiry first.
    """
    estate = _estate(inventory, criteria=criteria, now=now)
    previous = inventory.previous_leaves(scan_id)
    tally = FindingsTally()
    kept: list[EndpointView] = []
    changes = FindingChanges(new=0, still_open=0, resolved=0)
    for records in inventory.scan_batches(scan_id, batch):
        shown = [r for r in records if reportable(r)]
        history = read_history(inventory, shown, previous)
        views = _judge_all(
            shown, criteria=criteria, now=now, previous=previous, estate=estate, history=history
        )
        judged = [v for v in views if v.status in CHAIN_STATUSES]
        done = inventory.record_findings(
            scan_id, all_findings(judged), evaluated=[_key(v) for v in judged], now=now
        )
        changes = FindingChanges(
            new=changes.new + done.new,
            still_open=changes.still_open + done.still_open,
            resolved=changes.resolved + done.resolved,
        )
        tally.add(views)
        if keep_views:
            kept.extend(views)
    record_owners(inventory, criteria.owners, now=now)
    kept.sort(key=expiry_order)
    return ScanAssessment(views=tuple(kept), changes=changes, tally=tally)


def _estate(inventory: Inventory, *, criteria: Criteria, now: datetime) -> Estate:
    """The estate-wide context of a scan's judgement: key-reuse peers from bare rows, and the
    fleet and on-disk comparisons from bare leaf rows (:mod:`scanner.inventory.estate`): no
    chain is read, and only the endpoints those two rules can concern are kept -- those sent
    an SNI (``fleet_inconsistent``) and, when certificate files were imported, those whose leaf
    names one of the files' names (``file_not_deployed``). Memory stays flat in the size of the
    inventory for a sweep of addresses."""
    files = inventory.latest_leaves(_file_leaf, files=True, with_info=True)
    wanted = frozenset(_dns_key(n) for f in files for n in f.chain[0].san_dns)

    def pick(row: LeafRow) -> EndpointInput | None:
        if row.error is not None:
            return None
        if wanted and row.has_names:
            names = san_dns(row.info)
            if row.sni is not None or any(_dns_key(n) in wanted for n in names):
                return _leaf_input(row, names)
        return _leaf_input(row, ()) if row.sni is not None else None

    network = inventory.latest_leaves(pick, files=False, with_info=bool(wanted))
    inputs = sorted((*files, *network), key=expiry_order)
    return Estate(
        peers=peers_from_rows(inventory.leaf_keys()),
        fleet=fleet_inconsistencies(inputs, now=now, policy=criteria.policy),
        on_disk=undeployed(inputs),
    )


def _dns_key(name: str) -> str:
    """A DNS name as :mod:`reports.deployed` compares them."""
    return name.lower().rstrip(".")


def _file_leaf(row: LeafRow) -> EndpointInput:
    return _leaf_input(row, san_dns(row.info))


def _leaf_input(row: LeafRow, names: tuple[str, ...]) -> EndpointInput:
    """The rules' view of an endpoint with only its main leaf, and of the leaf only what the
    fleet and on-disk rules read (no DER: ``sha256`` identifies it)."""
    leaf = CertInfo(
        der=b"",
        sha256=row.sha256,
        error=row.error,
        not_before=row.not_before,
        not_after=row.not_after,
        san_dns=names,
        is_ca=row.is_ca,
    )
    return EndpointInput(
        address=row.address, port=row.port, sni=row.sni, status=row.status, chain=(leaf,)
    )
