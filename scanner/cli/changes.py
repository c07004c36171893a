"""``certscan inventory --changes [--since 7d]``: what changed between scans, as a table or
JSON Lines (:mod:`scanner.inventory.changes`)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from scanner.cli.report import open_existing
from scanner.serialize import json_line
from scanner.text import safe

__all__ = ["print_changes"]


def print_changes(db: str | None, since: str, *, json_out: bool) -> int:
    from rich.table import Table

    from reports import assess
    from scanner.cli.console import stdout_console
    from scanner.inventory.changes import change_dict, read_changes

    window = assess.parse_window(since, option="--since")
    start = datetime.now(UTC) - window
    inv = open_existing(db)
    try:
        found = read_changes(inv.engine, start)
    finally:
        inv.close()
    if json_out:
        for change in found:
            sys.stdout.write(json_line(change_dict(change)) + "\n")
        return 0
    table = Table(title=f"changes since {start:%Y-%m-%d %H:%M} UTC", title_justify="left")
    for column in ("when", "change", "endpoint", "old sha256", "new sha256", "notes"):
        table.add_column(column)
    for c in found:
        host = f"[{c.address}]" if ":" in c.address else c.address
        where = f"{host}:{c.port}" + (f" ({c.sni})" if c.sni else "")
        notes = []
        if c.kind == "gone":
            notes.append(f"status {c.status}")
        if c.issuer_changed:
            notes.append(f"issuer now {c.new_issuer}")
        if c.key_changed is not None:
            notes.append("new key" if c.key_changed else "same key")
        table.add_row(
            c.at.strftime("%Y-%m-%d %H:%M"),
            c.kind,
            safe(where),
            (c.old or "")[:16],
            (c.new or "")[:16],
            safe(", ".join(notes)),
        )
    out = stdout_console()
    out.print(table)
    out.print(f"{len(found)} changes", markup=False)
    return 0
