"""``certscan scans``: list recent scan runs, and ``certscan scans show ID``: one scan in detail.

A sharded scan (``sweep --workers``, ``certscan dispatch --zone``) is one ``scan_run`` with one
``scan_shard`` row per shard (:mod:`scanner.inventory.shards`). The list gives such a scan a
``shards`` cell (``3/4 done``); ``show`` adds a summary of its shards by state and a table of
them (zone, status, progress, attempts, agent, times, error), so the progress of a distributed
scan can be followed from the central inventory.

The JSON shapes (:mod:`scanner.inventory.views`) are the ones the HTTP API serves
(:mod:`exporters.serve.api`): one name per idea. Every text cell goes through
:func:`scanner.cli.console.safe` (zone, agent and error are certscan's own text, but an error may
quote a server). Exit codes follow :mod:`scanner.cli.app`: an unknown scan id is a usage error (2),
an inventory that cannot be opened an operational one (3).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from scanner.cli.options import DbOption
from scanner.cli.report import open_existing
from scanner.errors import UsageError
from scanner.serialize import json_line
from scanner.text import safe

if TYPE_CHECKING:
    from scanner.inventory.read import ScanRun
    from scanner.inventory.shards import ShardRecord

__all__ = [
    "rate",
    "scans_app",
    "shards_cell",
    "spec_summary",
]

scans_app = typer.Typer(
    help="Scan runs: list the recent ones, show one with its shards.",
    invoke_without_command=True,
    no_args_is_help=False,
    rich_markup_mode=None,
)

JsonOption = Annotated[bool, typer.Option("--json", help="JSON instead of a table.")]
_TIME = "%Y-%m-%d %H:%M:%S"


# --- pure helpers (also used by the HTTP API) --------------------------------------------------


def shards_cell(run: ScanRun, counts: Mapping[str, int] | None) -> str:
    """``3/4 done`` (``, 1 failed`` when some failed) for a sharded scan, '' otherwise."""
    from scanner.inventory.views import shard_states

    if run.shards is None:
        return ""
    states = shard_states(counts)
    text = f"{states['done']}/{run.shards} done"
    return text + (f", {states['failed']} failed" if states["failed"] else "")


def rate(run: ScanRun, now: datetime) -> float | None:
    """Targets stored per second since the scan started (until it finished); None before a
    measurable time has passed."""
    end = run.finished_at or now
    seconds = (end - run.started_at).total_seconds()
    return run.done / seconds if seconds > 0 else None


def _listing(values: object, limit: int = 3) -> str:
    items = [str(v) for v in values] if isinstance(values, list) else [str(values)]
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def spec_summary(spec: str) -> str:
    """One line saying what a scan swept, from its stored spec
    (``scanner.sweep.pipeline.scan_spec``):
    the first targets, the ports, and the job, zone, workers or shard options when set."""
    try:
        data = json.loads(spec)
    except ValueError:
        return "(unreadable spec)"
    if not isinstance(data, dict):
        return "(unreadable spec)"
    parts = []
    if data.get("specs"):
        parts.append(f"targets {_listing(data['specs'])}")
    if data.get("ports"):
        parts.append(f"ports {_listing(data['ports'], limit=8)}")
    if data.get("excludes"):
        parts.append(f"excluding {_listing(data['excludes'])}")
    for key in ("job", "zone"):
        if isinstance(data.get(key), str):
            parts.append(f"{key} {data[key]}")
    workers = data.get("workers")
    if isinstance(workers, list) and len(workers) == 2:
        parts.append(f"{workers[1]} workers (seed {workers[0]})")
    shard = data.get("shard")
    if isinstance(shard, list) and len(shard) == 3:
        parts.append(f"shard {shard[2]} of {shard[1]} (seed {shard[0]})")
    if isinstance(data.get("shard_size"), int):
        parts.append(f"{data['shard_size']} addresses a shard")
    return "; ".join(parts) or "(empty spec)"


# --- commands ------------------------------------------------------------------------------


def _when(moment: datetime | None) -> str:
    return moment.strftime(_TIME) if moment is not None else ""


@scans_app.callback()
def scans(
    ctx: typer.Context,
    db: DbOption = None,
    limit: Annotated[int, typer.Option("--limit", metavar="N", help="How many recent scans.")] = 20,
    json_out: JsonOption = False,
) -> int:
    """List recent scan runs (the ids that --scan and --resume refer to); 'scans show ID' shows
    one with its shards."""
    from scanner.cli.console import cell, simple_table, stdout_console
    from scanner.inventory.views import scan_dict

    ctx.obj = db
    if ctx.invoked_subcommand is not None:
        return 0
    if limit < 1:
        raise UsageError(f"--limit must be at least 1 (got {limit})")
    with open_existing(db) as inv:
        runs = inv.scans(limit=limit)
        counts = inv.shard_counts([r.id for r in runs if r.shards is not None])
    if json_out:
        for r in runs:
            sys.stdout.write(json_line(scan_dict(r, counts.get(r.id))) + "\n")
        return 0
    headers = ["id", "started", "finished", "status", "targets", "done", "shards"]
    table = simple_table("scans", headers)
    for r in runs:
        table.add_row(
            str(r.id),
            _when(r.started_at),
            _when(r.finished_at),
            cell(r.status),
            str(r.total),
            str(r.done),
            cell(shards_cell(r, counts.get(r.id))),
        )
    stdout_console().print(table)
    return 0


@scans_app.command("show")
def show(
    ctx: typer.Context,
    scan_id: Annotated[int, typer.Argument(metavar="ID", help="The scan id (certscan scans).")],
    db: DbOption = None,
    json_out: JsonOption = False,
) -> int:
    """Show one scan: its status, what it swept, its progress and, when sharded, its shards."""
    from scanner.cli.console import stdout_console
    from scanner.inventory.views import scan_dict, shard_dict

    chosen = db if db is not None else ctx.obj
    with open_existing(chosen) as inv:
        run = inv.scan(scan_id) if 0 <= scan_id < 2**63 else None
        if run is None:
            raise UsageError(f"no scan {scan_id} in the inventory (see certscan scans)")
        shards = inv.shards(scan_id) if run.shards is not None else []
    counts: dict[str, int] = {}
    for s in shards:
        counts[s.status] = counts.get(s.status, 0) + 1
    if json_out:
        body = {
            "scan": scan_dict(run, counts) | {"spec": _spec_json(run.spec)},
            "shards": [shard_dict(s) for s in shards],
        }
        sys.stdout.write(json_line(body) + "\n")
        return 0
    _print_header(run, counts, now=datetime.now(UTC))
    rejected = sum(s.rejected or 0 for s in shards)
    dead = sum(s.dead_letters or 0 for s in shards)
    if rejected or dead:
        typer.echo(
            f"ingest:   {rejected} outcomes rejected (not in the plan, malformed or hostile), "
            f"{dead} messages dead-lettered"
        )
    if run.shards is not None:
        stdout_console().print(_shard_table(shards))
    for s in shards:
        if s.rejected or s.dead_letters:
            typer.echo(
                f"shard {s.shard}: {s.rejected or 0} outcomes rejected, "
                f"{s.dead_letters or 0} messages dead-lettered"
            )
    return 0


@scans_app.command("retry")
def retry(
    ctx: typer.Context,
    scan_id: Annotated[int, typer.Argument(metavar="ID", help="A dispatched scan's id.")],
    shard: Annotated[
        int | None, typer.Option("--shard", metavar="N", help="Only this shard.")
    ] = None,
    db: DbOption = None,
    broker: Annotated[
        str | None,
        typer.Option("--broker", metavar="URL", envvar="CERTSCAN_BROKER", show_envvar=True),
    ] = None,
) -> int:
    """Send the failed or stuck shards of a dispatched scan to their zone's agents again (all
    that are not done, or --shard N); the scan runs again until they settle."""
    from scanner.zones import app as zapp
    from scanner.zones.retry import retry_shards

    chosen = db if db is not None else ctx.obj
    if not 0 <= scan_id < 2**62 or (shard is not None and not 0 <= shard < 2**31):
        raise UsageError(f"no scan {scan_id} in the inventory (see certscan scans)")
    url = zapp.broker_url(broker)
    with open_existing(chosen) as inv:
        sent = retry_shards(inv, scan_id, shard, url)
    if not sent:
        typer.echo(f"scan {scan_id}: no failed or stuck shard to retry")
        return 0
    listed = ", ".join(str(n) for n in sent[:20]) + (" ..." if len(sent) > 20 else "")
    typer.echo(f"scan {scan_id}: {len(sent)} shards queued again ({listed})")
    return 0


def _spec_json(spec: str) -> object:
    try:
        return json.loads(spec)
    except ValueError:
        return None


def _print_header(run: ScanRun, counts: Mapping[str, int], *, now: datetime) -> None:
    from scanner.inventory.views import shard_states

    lines = [
        f"scan {run.id}: {run.status}",
        f"spec:     {spec_summary(run.spec)}",
        f"started:  {_when(run.started_at)} UTC",
    ]
    if run.finished_at is not None:
        took = int((run.finished_at - run.started_at).total_seconds())
        lines.append(f"finished: {_when(run.finished_at)} UTC (after {_duration(took)})")
    share = f" ({100 * run.done / run.total:.1f}%)" if run.total else ""
    lines.append(
        f"targets:  total {run.total}, done {run.done}{share}, ok {run.ok}, failed {run.failed}"
    )
    per_second = rate(run, now)
    if per_second is not None:
        lines.append(f"rate:     {per_second:.1f} targets/s")
    if run.shards is not None:
        states = shard_states(counts)
        summary = ", ".join(f"{state} {n}" for state, n in states.items())
        lines.append(f"shards:   {run.shards}: {summary}")
    for line in lines:
        typer.echo(safe(line, 400))


def _duration(seconds: int) -> str:
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def _shard_table(shards: list[ShardRecord]) -> Any:
    from scanner.cli.console import cell, simple_table

    headers = (
        "shard",
        "zone",
        "status",
        "done/total",
        "ok",
        "failed",
        "attempts",
        "agent",
        "started",
        "finished",
        "error",
    )
    table = simple_table("shards", headers)
    for s in shards:
        table.add_row(
            str(s.shard),
            cell(s.zone or ""),
            cell(s.status),
            f"{s.done}/{s.total}",
            str(s.ok),
            str(s.failed),
            str(s.attempts),
            cell(s.agent or ""),
            _when(s.started_at),
            _when(s.finished_at),
            cell(s.error or "", 200),
        )
    return table
