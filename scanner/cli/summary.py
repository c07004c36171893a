"""``certscan summary``: the estate by owner, issuer, key type, TLS version and lifetime, the
share that looks automated, and the trend over the last scans (``reports.summary``)."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer

from scanner.cli.options import CaBundleOption, ConfigOption, DbOption
from scanner.cli.report import open_existing


def summary(
    scans: Annotated[
        int, typer.Option("--scans", min=1, max=1000, help="Scans in the trend.")
    ] = 10,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    config: ConfigOption = None,
    ca_bundle: CaBundleOption = None,
    db: DbOption = None,
) -> int:
    """Summarise the estate: counts by owner, issuer, key type, TLS version and lifetime."""
    from rich.table import Table

    from reports import assess
    from reports.summary import estate, estate_dict
    from scanner.cli.console import cell, stdout_console

    criteria = assess.load_criteria(config, ca_bundle or (), env=os.environ)
    now = datetime.now(UTC)
    inventory = open_existing(db)
    try:
        views = assess.read_views(inventory, criteria=criteria, now=now)
        runs = inventory.scans(limit=scans)
    finally:
        inventory.close()
    found = estate(views, runs)
    if json_out:
        sys.stdout.write(json.dumps(estate_dict(found), ensure_ascii=True) + "\n")
        return 0
    out = stdout_console()
    share = found.automated_share
    out.print(
        f"{found.endpoints} endpoints, {found.with_certificates} with certificates, "
        f"{found.certificates} distinct leaves; automated: "
        + ("unknown (no endpoint with two renewals yet)" if share is None else
           f"{found.automated} of {found.judged} ({share:.0%})"),
        markup=False,
    )  # fmt: skip
    for name, groups in found.dimensions():
        table = Table(title=f"by {name}", title_justify="left")
        table.add_column(name, overflow="fold")
        table.add_column("endpoints", justify="right")
        table.add_column("certificates", justify="right")
        for g in groups:
            table.add_row(cell(g.label), str(g.endpoints), str(g.certificates))
        out.print(table)
    trend = Table(title=f"last {len(found.trend)} scans", title_justify="left")
    for column in ("scan", "started", "done", "ok", "failed"):
        trend.add_column(column, justify="right" if column != "started" else "left")
    for p in found.trend:
        trend.add_row(
            str(p.scan_id), f"{p.started_at:%Y-%m-%d %H:%M}", str(p.done), str(p.ok), str(p.failed)
        )
    out.print(trend)
    return 0
