"""``certscan lab up`` and ``certscan demo``: the built-in loopback lab, served or swept."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from scanner.errors import UsageError
from scanner.models import EngineLimits
from scanner.text import safe

if TYPE_CHECKING:
    from scanner.lab import servers as lab_mod

lab_app = typer.Typer(
    help="The built-in lab: TLS servers with good and bad certificates on loopback.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

#: Demo limits: short enough that the lab's hanging port costs two seconds, not ten; the
#: protocol probe on, so the TLS 1.0 endpoint shows up as ``legacy_protocol``; ``--all-certs``
#: on, so a server holding an RSA and an ECDSA certificate shows both.
DEMO_LIMITS = EngineLimits(
    concurrency=50,
    connect_timeout=2.0,
    handshake_timeout=2.0,
    target_deadline=3.0,
    probe_protocols=True,
    all_certs=True,
)
DEMO_REPORT = "demo-report.html"
DEMO_CA = "demo-lab-ca.pem"


def _lab_table(lab: lab_mod.Lab) -> object:
    from scanner.cli.console import cell, simple_table
    from scanner.lab import servers as lab_mod

    table = simple_table("certscan lab", ["endpoint", "name", "what it serves"])
    for endpoint, name, description in lab_mod.describe(lab):
        table.add_row(cell(endpoint), cell(name), cell(description, 100))
    return table


def _check_loopback(base: str) -> None:
    if not base.startswith("127."):
        raise UsageError(f"the lab only binds loopback addresses (127.0.0.0/8), not {base}")


@lab_app.command("up")
def lab_up(
    port: Annotated[
        int, typer.Option("--port", metavar="PORT", help="Port for every lab server (0: any).")
    ] = 8443,
    base: Annotated[
        str,
        typer.Option(
            "--base", metavar="ADDRESS", help="First loopback address; the lab counts up from it."
        ),
    ] = "127.77.0.1",
) -> int:
    """Serve the lab until Ctrl-C; sweep it with `certscan sweep -f sample_ranges.txt`."""
    import trio

    from scanner.cli.console import stdout_console
    from scanner.lab import servers as lab_mod

    _check_loopback(base)
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be 0..65535 (got {port})")
    console = stdout_console()

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            lab = await nursery.start(
                lambda task_status: lab_mod.run_lab(
                    base_address=base, port=port, task_status=task_status
                )
            )
            console.print(_lab_table(lab))
            console.print("serving; press Ctrl-C to stop", markup=False)

    try:
        trio.run(serve)
    except KeyboardInterrupt:
        console.print("lab stopped", markup=False)
    return 0


def demo(db: Path | None) -> int:
    """See ``certscan demo --help``."""
    import trio
    from rich.console import Console

    from reports import assess
    from reports.atomic import write_atomic
    from reports.destination import ReportOutput
    from reports.output import findings_line
    from scanner.cli.console import ConsoleEvents, inventory_table, stdout_console
    from scanner.cli.report import findings_summary_table
    from scanner.inventory.store import Inventory, default_db_path
    from scanner.lab import servers as lab_mod
    from scanner.sweep.modes import DiscoverOptions
    from scanner.sweep.options import SweepOptions, SweepReport
    from scanner.sweep.run import run

    path = (db or default_db_path().with_name("demo.db")).expanduser().absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        candidate = Path(f"{path}{suffix}")
        if candidate.exists():
            os.unlink(candidate)
    report_path = path.with_name(DEMO_REPORT)
    ca_path = path.with_name(DEMO_CA)
    console = stdout_console()
    err = Console(stderr=True, highlight=False)

    async def go() -> SweepReport:
        async with trio.open_nursery() as nursery:
            lab = await nursery.start(
                lambda task_status: lab_mod.run_lab(port=0, task_status=task_status)
            )
            console.print(_lab_table(lab))
            # The lab's root is a private PKI root, trusted the way --ca-bundle trusts one.
            write_atomic(ca_path, lab.ca.cert_pem)
            criteria = assess.load_criteria(None, [ca_path], env=os.environ)
            options = SweepOptions(
                specs=tuple(f"{e.address}:{e.port}" for e in lab.endpoints),
                ports=(443,),
                limits=DEMO_LIMITS,
                db_url=f"sqlite:///{path}",
                db_label=str(path),
                progress=True,
                criteria=criteria,
                report=ReportOutput(path=str(report_path), format="html"),
                keep_views=True,
                # The lab is on loopback: connect discovery, never raw sockets.
                discover=DiscoverOptions(mode="connect"),
            )
            report = await run(options, out=sys.stdout, events=ConsoleEvents(err))
            nursery.cancel_scope.cancel()
        return report

    report = trio.run(go)
    inv = Inventory(f"sqlite:///{path}")
    try:
        records = inv.latest_endpoints(include_failures=True)
    finally:
        inv.close()
    console.print(inventory_table(records))
    console.print(findings_summary_table(report.views, title="findings (most severe first)"))
    console.print(findings_line(report.views), markup=False)
    if not report.interrupted:
        console.print(f"open the report: {safe(report_path.as_uri(), 300)}", markup=False)
    console.print(
        f"next: certscan findings --db {safe(path, 300)}   |   "
        f"certscan report --db {safe(path, 300)} --ca-bundle {safe(ca_path, 300)} -o report.html"
        "   |   certscan lab up, then certscan sweep -f sample_ranges.txt",
        markup=False,
    )
    return report.exit_code
