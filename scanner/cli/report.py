"""``certscan report`` and ``certscan findings``, and the report output ``sweep --report`` shares.

``report`` judges the inventory at report time (so a policy change shows without rescanning) and
writes HTML, CSV or JSON; ``findings`` lists the lifecycle the sweeps recorded. Every option is
checked before the inventory is opened, so a usage error never waits on a database. Exit codes
follow :mod:`scanner.cli.app`: 1 when ``--fail-on`` matched, 2 usage, 3 operational.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from reports.render import CSV_KINDS, FORMATS
from scanner.cli.options import (
    SEVERITY_NAMES,
    CaBundleOption,
    ConfigOption,
    DbOption,
    FailOnOption,
)
from scanner.errors import OperationalError, UsageError
from scanner.models import Severity
from scanner.serialize import iso, json_line
from scanner.text import safe

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from reports.model import EndpointView
    from scanner.inventory.store import FindingRecord, Inventory

#: The most endpoints an HTML report shows: past it the page would run to hundreds of
#: megabytes, so ``certscan report`` refuses (exit 2) and points to JSON/CSV or a filter.
HTML_MAX_ENDPOINTS = 20_000
SEVERITY_STYLE = {
    Severity.CRITICAL: "bold red",
    Severity.HIGH: "red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}


def findings_summary_table(views: Sequence[EndpointView], title: str = "findings") -> Table:
    """One row per endpoint with findings: its worst severity and every kind, most severe first."""
    from rich.table import Table

    from reports.output import endpoint_label
    from scanner.cli.console import cell

    table = Table(title=title, title_justify="left")
    table.add_column("endpoint", no_wrap=True)
    table.add_column("worst", no_wrap=True)
    table.add_column("findings", overflow="fold")
    table.add_column("subject CN", overflow="ellipsis", no_wrap=True, max_width=36)
    rows = [v for v in views if v.findings]
    rows.sort(key=lambda v: (-max(f.severity for f in v.findings), v.address, v.port, v.sni or ""))
    for view in rows:
        worst = max(f.severity for f in view.findings)
        kinds = ", ".join(
            f"{f.kind} ({f.severity.label})"
            for f in sorted(view.findings, key=lambda f: -f.severity)
        )
        leaf = view.chain[0] if view.chain else None
        table.add_row(
            cell(endpoint_label(view.address, view.port, view.sni), 60),
            cell(worst.label, style=SEVERITY_STYLE[worst]),
            cell(kinds, 400),
            cell(leaf.subject_cn if leaf else ""),
        )
    return table


def lifecycle_table(
    records: Sequence[FindingRecord], *, resolved: bool, title: bool = True
) -> Table:
    """``certscan findings``: each stored finding with when it was first and last seen (one
    page of them; the pages after the first without the title)."""
    from rich.table import Table

    from reports.output import endpoint_label
    from scanner.cli.console import cell

    name = "findings (open and resolved)" if resolved else "open findings"
    table = Table(title=name if title else None, title_justify="left")
    table.add_column("severity", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("endpoint", no_wrap=True)
    table.add_column("message", overflow="fold")
    table.add_column("first seen", no_wrap=True)
    table.add_column("last seen", no_wrap=True)
    if resolved:
        table.add_column("resolved", no_wrap=True)
    for rec in records:
        row = [
            cell(rec.severity.label, style=SEVERITY_STYLE[rec.severity]),
            cell(rec.kind),
            cell(endpoint_label(rec.address, rec.port, rec.sni), 60),
            cell(rec.message, 300),
            cell(_when(rec.first_seen)),
            cell(_when(rec.last_seen)),
        ]
        if resolved:
            row.append(cell(_when(rec.resolved_at) if rec.resolved_at else "open"))
        table.add_row(*row)
    return table


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def finding_dict(rec: FindingRecord) -> dict[str, object]:
    """One line of ``certscan findings --json``."""
    return {
        "address": rec.address,
        "port": rec.port,
        "sni": rec.sni,
        "kind": rec.kind,
        "severity": rec.severity.label,
        "message": rec.message,
        "sha256": rec.sha256,
        "first_seen": iso(rec.first_seen),
        "last_seen": iso(rec.last_seen),
        "resolved_at": iso(rec.resolved_at),
        "first_scan_id": rec.first_scan_id,
        "last_scan_id": rec.last_scan_id,
    }


def open_existing(db: str | None) -> Inventory:
    """The inventory for reading; a SQLite file that does not exist is an error, not created."""
    import sqlalchemy as sa

    from scanner.inventory.store import Inventory, db_url

    url = db_url(db)
    parsed = sa.make_url(url) if url.startswith("sqlite") else None
    database = parsed.database if parsed is not None else None
    if database and database != ":memory:" and not Path(database).exists():
        raise OperationalError(
            f"no inventory at {safe(database, 200)}: run certscan sweep first (or pass --db)"
        )
    return Inventory(url)


def _err() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


# --- commands ------------------------------------------------------------------------------


def report(
    output: Annotated[
        str,
        typer.Option(
            "-o",
            "--output",
            metavar="FILE|-",
            help="Write the report here ('-': standard output). Written atomically.",
        ),
    ] = "-",
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            metavar="|".join(FORMATS),
            help="Report format (default: from the -o extension, else html).",
        ),
    ] = None,
    csv_kind: Annotated[
        str,
        typer.Option(
            "--csv-kind",
            metavar="|".join(CSV_KINDS),
            help="CSV rows: one per endpoint x finding, or one per endpoint.",
        ),
    ] = "findings",
    severity: Annotated[
        str | None,
        typer.Option(
            "--severity", metavar=SEVERITY_NAMES, help="Only findings at or above this severity."
        ),
    ] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option(
            "--kind", metavar="KIND", help="Only findings of this kind (repeatable, or a,b)."
        ),
    ] = None,
    expiring_within: Annotated[
        str | None,
        typer.Option(
            "--expiring-within",
            metavar="30d|12h|2w",
            help="Only endpoints presenting a certificate that expires within this window.",
        ),
    ] = None,
    scan: Annotated[
        int | None,
        typer.Option(
            "--scan",
            metavar="ID",
            help="Report this scan's observations (default: the latest of every endpoint).",
        ),
    ] = None,
    owner: Annotated[
        list[str] | None,
        typer.Option(
            "--owner", metavar="OWNER", help="Only endpoints of this [owners] owner (repeatable)."
        ),
    ] = None,
    fail_on: FailOnOption = None,
    config: ConfigOption = None,
    ca_bundle: CaBundleOption = None,
    db: DbOption = None,
) -> int:
    """Judge the inventory with the current policy and write an HTML, CSV or JSON report.

    JSON and CSV are judged and written a batch of 1,000 endpoints at a time (no endpoint's
    chain is held past its batch; bare key and name rows of the estate and 8 bytes an endpoint
    remain; with --scan the scan is judged at once); HTML is built in memory and refused past
    20,000 endpoints."""
    from reports import assess
    from reports.destination import report_output, stream_report, write_report
    from reports.output import FindingsTally, build_report, findings_line

    target = report_output(output, fmt, csv_kind)
    flt = assess.ReportFilter(
        severity=None if severity is None else assess.parse_severity(severity, option="--severity"),
        kinds=assess.parse_kinds(kind or ()),
        expiring_within=None if expiring_within is None else assess.parse_window(expiring_within),
        owners=frozenset(owner or ()),
    )
    threshold = None if fail_on is None else assess.parse_severity(fail_on, option="--fail-on")
    criteria = assess.load_criteria(config, ca_bundle or (), env=os.environ)
    now = datetime.now(UTC)
    unfiltered = flt == assess.ReportFilter()
    inventory = open_existing(db)
    try:
        info = None if scan is None else assess.scan_info(inventory, scan)
        if target.format in ("json", "csv"):  # streamed: one batch of views in memory
            tally = FindingsTally()
            worst: list[bool] = [False]

            def batches() -> Iterator[tuple[EndpointView, ...]]:
                for views in assess.iter_views(inventory, criteria=criteria, now=now, scan_id=scan):
                    shown = assess.select(views, flt, now=now)
                    tally.add(shown)
                    worst[0] = worst[0] or assess.failing(shown, threshold)
                    yield shown

            size = stream_report(batches(), target, generated_at=now, scan=info)
            line, failed = tally.line(), worst[0]
        else:
            if unfiltered:  # refuse before judging a large inventory
                _html_bound(inventory.reportable_count(scan))
            views = assess.read_views(inventory, criteria=criteria, now=now, scan_id=scan)
            shown_all = assess.select(views, flt, now=now)
            _html_bound(len(shown_all))
            size = write_report(build_report(shown_all, generated_at=now, scan=info), target)
            line, failed = findings_line(shown_all), assess.failing(shown_all, threshold)
    finally:
        inventory.close()
    if not target.to_stdout:
        _err().print(
            f"wrote {safe(target.path, 200)} ({target.format}, {size:,} bytes): {line}",
            markup=False,
        )
    return 1 if failed else 0


#: Findings read per page by ``certscan findings``: the listing holds one page in memory.
FINDINGS_PAGE = 1000


def _html_bound(selected: int) -> None:
    if selected > HTML_MAX_ENDPOINTS:
        raise UsageError(
            f"the HTML report holds at most {HTML_MAX_ENDPOINTS:,} endpoints and "
            f"{selected:,} are selected: narrow it (--severity, --kind, --expiring-within, "
            "--scan) or use --format json or csv"
        )


def findings(
    all_findings: Annotated[
        bool, typer.Option("--all", help="Include resolved findings (with when they resolved).")
    ] = False,
    severity: Annotated[
        str | None,
        typer.Option(
            "--severity", metavar=SEVERITY_NAMES, help="Only findings at or above this severity."
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per finding.")] = False,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            metavar="N",
            min=1,
            max=100_000,
            help="Print one page of N findings, then the --cursor of the next page on stderr.",
        ),
    ] = None,
    cursor: Annotated[
        str | None,
        typer.Option("--cursor", metavar="CURSOR", help="Resume after this cursor (from --limit)."),
    ] = None,
    db: DbOption = None,
) -> int:
    """List the findings the sweeps recorded: open ones with first and last seen (--all: also
    resolved ones), most severe first, then in the order they were opened. Read and printed a
    page at a time (memory stays at one page); --limit prints one page."""
    from reports import assess
    from scanner.cli.console import stdout_console

    threshold = None if severity is None else assess.parse_severity(severity, option="--severity")
    after = None if cursor is None else parse_cursor(cursor)
    out = None if json_out else stdout_console()
    inventory = open_existing(db)
    try:
        size = FINDINGS_PAGE if limit is None else limit
        first = True
        while True:
            records, after = inventory.findings_page(
                open_only=not all_findings, min_severity=threshold, after=after, limit=size
            )
            if json_out:
                sys.stdout.write("".join(json_line(finding_dict(r)) + "\n" for r in records))
            elif out is not None and (records or first):
                out.print(lifecycle_table(records, resolved=all_findings, title=first))
            first = False
            if after is None or limit is not None:
                break
        if limit is not None and after is not None:
            _err().print(f"next page: --cursor {after[0]}:{after[1]}", markup=False)
        if out is not None and limit is None:
            counts = inventory.findings_tally(open_only=not all_findings, min_severity=threshold)
            out.print(_lifecycle_summary(counts), markup=False)
    finally:
        inventory.close()
    return 0


def parse_cursor(text: str) -> tuple[int, int]:
    """A ``--cursor`` as ``certscan findings --limit`` printed it: ``SEVERITY:ID``."""
    level, sep, last = text.partition(":")
    if not sep or not level.isdigit() or not last.isdigit() or len(last) > 19:
        raise UsageError(f"--cursor must be one certscan findings printed (got {safe(text, 40)})")
    if int(level) not in {int(s) for s in Severity}:
        raise UsageError(f"--cursor names no severity (got {safe(text, 40)})")
    return int(level), int(last)


def _lifecycle_summary(counts: dict[str, int]) -> str:
    text = f"{counts['open']} open findings on {counts['endpoints']} endpoints"
    return text + (f", {counts['resolved']} resolved" if counts["resolved"] else "")
