"""``certscan owners``: the ``[owners]`` rules, and which rule owns each endpoint.

Evaluates the current config against every endpoint of the inventory, stores the result (so a
config edit re-assigns without a rescan; the metrics, the API and the hooks read what is
stored) and prints one row per endpoint, or JSON Lines with ``--json``. Exit 1 with
``--fail-unowned`` when an endpoint has no owner, so coverage can be gated in CI.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer

from scanner.cli.options import ConfigOption, DbOption
from scanner.cli.report import open_existing
from scanner.serialize import json_line


def owners(
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per endpoint.")] = False,
    fail_unowned: Annotated[
        bool, typer.Option("--fail-unowned", help="Exit 1 when an endpoint has no owner.")
    ] = False,
    config: ConfigOption = None,
    db: DbOption = None,
) -> int:
    """Assign every endpoint to its owner by the [owners] rules (first match wins), store it,
    and list the assignments."""
    from rich.console import Console
    from rich.table import Table

    from reports import assess
    from reports.output import endpoint_label
    from scanner.cli.console import cell, stdout_console

    criteria = assess.load_criteria(config, env=os.environ)
    rules = criteria.owners.rules
    now = datetime.now(UTC)
    inventory = open_existing(db)
    try:
        changed = assess.record_owners(inventory, criteria.owners, now=now)
        stored = inventory.owners()
        endpoints = inventory.latest_endpoints(include_failures=True)
    finally:
        inventory.close()
    keys = sorted(
        {(e.address, e.port, e.sni) for e in endpoints}, key=lambda k: (k[0], k[1], k[2] or "")
    )
    unowned = [k for k in keys if k not in stored]
    if json_out:
        for address, port, sni in keys:
            found = stored.get((address, port, sni))
            sys.stdout.write(
                json_line(
                    {
                        "address": address,
                        "port": port,
                        "sni": sni,
                        "owner": found.owner if found else None,
                        "environment": found.environment if found else None,
                        "tags": list(found.tags) if found else [],
                        "rule": found.rule if found else None,
                    }
                )
                + "\n"
            )
    else:
        table = Table(title="owners (first matching rule)", title_justify="left")
        for column in ("endpoint", "owner", "environment", "tags", "rule"):
            table.add_column(column, overflow="fold")
        for address, port, sni in keys:
            found = stored.get((address, port, sni))
            table.add_row(
                cell(endpoint_label(address, port, sni)),
                cell(found.owner) if found else cell("unowned", style="yellow"),
                cell(found.environment or "") if found else "",
                cell(", ".join(found.tags)) if found else "",
                cell(found.rule) if found else "",
            )
        stdout_console().print(table)
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"{len(keys)} endpoints, {len(keys) - len(unowned)} owned, {len(unowned)} unowned "
        f"({len(rules)} rules; {changed} assignments changed)",
        markup=False,
    )
    return 1 if fail_unowned and unowned else 0
