"""``certscan export prometheus``: the metrics ``certscan serve`` exposes at ``/metrics``, written
once to a file (for node_exporter's textfile collector, from cron or a systemd timer after each
sweep) or to standard output. No daemon needed.

Exit codes follow :mod:`scanner.cli.app`: 0 written, 2 bad usage (the output's directory does not
exist, or it is a directory), 3 operational (no inventory, database or write failure). Options
are checked before the inventory is opened, and the file is replaced only once the whole
exposition has been rendered, so a failure never leaves a partial or empty file behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scanner.cli.options import DbOption
from scanner.cli.report import open_existing
from scanner.errors import OperationalError, UsageError
from scanner.text import safe

export_app = typer.Typer(
    help="Export the inventory in other formats (Prometheus metrics).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _check_output(output: str) -> str:
    path = output.strip() or "-"
    if path == "-":
        return path
    target = Path(path).expanduser()
    if target.is_dir():
        raise UsageError(f"-o {safe(path, 200)}: is a directory")
    parent = target.absolute().parent
    if not parent.is_dir():
        raise UsageError(f"-o {safe(path, 200)}: directory {safe(parent, 200)} not found")
    return str(target)


@export_app.command("prometheus")
def prometheus(
    output: Annotated[
        str,
        typer.Option(
            "-o",
            "--output",
            metavar="FILE|-",
            help="Write the metrics here ('-': standard output), atomically. For node_exporter's "
            "textfile collector, a NAME.prom file in its --collector.textfile.directory.",
        ),
    ] = "-",
    owner_label: Annotated[
        bool,
        typer.Option(
            "--owner-label",
            help="Add the [owners] owner as a label on the per-endpoint series (off by "
            "default: one more label on every series).",
        ),
    ] = False,
    db: DbOption = None,
) -> int:
    """Write the inventory's Prometheus metrics (text format, as served at /metrics)."""
    from rich.console import Console

    from reports.destination import write_stdout

    path = _check_output(output)
    inventory = open_existing(db)
    try:
        # Imported here, not at start-up: only this command needs the Prometheus client.
        from prometheus_client import CollectorRegistry, generate_latest

        from exporters.prometheus import CertscanCollector
        from exporters.textfile import write_textfile

        registry = CollectorRegistry()
        registry.register(CertscanCollector(inventory, owner_label=owner_label))
        if path == "-":
            write_stdout(generate_latest(registry))
            return 0
        try:
            write_textfile(path, registry)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise OperationalError(f"cannot write {safe(path, 200)}: {reason}") from None
    finally:
        inventory.close()
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if not path.endswith(".prom"):
        err.print(
            f"note: node_exporter's textfile collector reads only *.prom files, not "
            f"{safe(Path(path).name, 200)}",
            markup=False,
        )
    return 0
