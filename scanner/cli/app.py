"""The ``certscan`` command line.

Exit codes: 0 success, 1 findings at or above ``--fail-on`` (sweep, report), 2 bad usage or input,
3 operational failure (database, network set-up, internal error), 130 interrupted by Ctrl-C.
Every error is one line on stderr; a traceback is shown only with ``CERTSCAN_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer.main import get_command

from scanner import __version__
from scanner.cli import changes as commands_changes
from scanner.cli import check as commands_check
from scanner.cli import db as commands_db
from scanner.cli import export as commands_export
from scanner.cli import files as commands_files
from scanner.cli import hooks as commands_hooks
from scanner.cli import lab as commands_lab
from scanner.cli import options as sa
from scanner.cli import owners as commands_owners
from scanner.cli import report as commands_report
from scanner.cli import scans as commands_scans
from scanner.cli import serve as commands_serve
from scanner.cli import summary as commands_summary
from scanner.cli import sweep as commands_sweep
from scanner.cli import zones as commands_zones
from scanner.cli.extras import missing_extra_message
from scanner.cli.report import open_existing
from scanner.errors import CertscanError
from scanner.inventory.location import db_url
from scanner.serialize import json_line, record_dict
from scanner.sweep.options import EXIT_INTERRUPTED
from scanner.text import safe

if TYPE_CHECKING:
    pass

app = typer.Typer(
    name="certscan",
    help="Find every TLS certificate on a network and never let one expire by surprise.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(commands_lab.lab_app, name="lab")
app.add_typer(commands_export.export_app, name="export")
app.add_typer(commands_hooks.hooks_app, name="hooks")
app.add_typer(commands_scans.scans_app, name="scans")
app.add_typer(commands_db.db_app, name="db")
app.command()(commands_sweep.sweep)
app.command()(commands_check.check)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"certscan {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """certscan: sweep networks for TLS endpoints, inventory every certificate, watch expiry."""


@app.command()
def inventory(
    db: sa.DbOption = None,
    scan: Annotated[
        int | None,
        typer.Option("--scan", metavar="ID", help="Show the observations of this scan only."),
    ] = None,
    all_targets: Annotated[
        bool, typer.Option("--all", help="Include endpoints that yielded no certificate.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per endpoint.")] = False,
    changes: Annotated[
        bool,
        typer.Option("--changes", help="List what changed between scans instead (see --since)."),
    ] = False,
    since: Annotated[
        str, typer.Option("--since", metavar="DURATION", help="With --changes: this far back.")
    ] = "7d",
) -> int:
    """List endpoints and their certificates from the inventory, soonest expiry first."""
    if changes:
        return commands_changes.print_changes(db, since, json_out=json_out)

    from scanner.cli.console import inventory_table, stdout_console

    url = db_url(db)
    inv = open_existing(db)
    try:
        records = inv.latest_endpoints(scan_id=scan, include_failures=all_targets)
    finally:
        inv.close()
    if json_out:
        for rec in records:
            sys.stdout.write(json_line(record_dict(rec)) + "\n")
        return 0
    out = stdout_console()
    out.print(inventory_table(records))
    out.print(
        f"{len(records)} endpoints in {safe(commands_sweep.db_label(url), 200)}", markup=False
    )
    return 0


app.command("findings")(commands_report.findings)
app.command("report")(commands_report.report)
app.command("owners")(commands_owners.owners)
app.command("import")(commands_files.import_)
app.command("summary")(commands_summary.summary)
app.command("serve")(commands_serve.serve)
app.command("dispatch")(commands_zones.dispatch)
app.command("agent")(commands_zones.agent)
app.command("ingest")(commands_zones.ingest)


@app.command()
def demo(
    db: Annotated[
        Path | None,
        typer.Option(
            "--db",
            metavar="FILE",
            help="SQLite file to create (default: $XDG_DATA_HOME/certscan/demo.db).",
        ),
    ] = None,
) -> int:
    """Start the built-in loopback lab, sweep it into a fresh SQLite file, show what was found."""
    return commands_lab.demo(db)


def _error_line(text: str) -> None:
    """One line on stderr (already made safe; never markup, never wrapped)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _one_line(exc: BaseException) -> str:
    return safe(str(exc) or type(exc).__name__, 500)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns (and, as a script, exits with) the exit code."""
    command = get_command(app)
    try:
        result = command.main(
            args=list(argv) if argv is not None else None,
            prog_name="certscan",
            standalone_mode=False,
        )
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        return EXIT_INTERRUPTED
    except typer.TyperException as exc:  # click's usage errors: bad option, missing value...
        fmt = getattr(exc, "format_message", None)
        message = fmt() if callable(fmt) else str(exc)
        if type(exc).__name__ == "NoArgsIsHelpError":  # `certscan` or `certscan lab` alone
            sys.stderr.write(message.rstrip("\n") + "\n")
            return 2
        ctx = getattr(exc, "ctx", None)
        where = getattr(ctx, "command_path", "certscan") or "certscan"
        if where == "certscan check":  # a monitoring plugin: usage errors are UNKNOWN (3)
            return commands_check.unknown(f"{message} (see '{where} --help')")
        _error_line(f"certscan: error: {safe(message, 300)} (see '{where} --help')")
        return 2
    except (Exception, KeyboardInterrupt, BaseExceptionGroup) as raised:
        # A user error raised inside a trio nursery arrives wrapped in an exception group.
        found = _sole(raised)
        extra = missing_extra_message(found)
        if extra is not None:
            _error_line(f"certscan: error: {extra}")
            return 2
        if isinstance(found, CertscanError):
            _error_line(f"certscan: error: {_one_line(found)}")
            return found.exit_code
        if isinstance(found, KeyboardInterrupt):
            _error_line("certscan: interrupted")
            return EXIT_INTERRUPTED
        if os.environ.get("CERTSCAN_DEBUG"):
            raise
        _error_line(
            f"certscan: internal error: {type(found).__name__}: {_one_line(found)} "
            "(set CERTSCAN_DEBUG=1 for a traceback)"
        )
        return 3
    return int(result) if isinstance(result, int) else 0


def _sole(exc: BaseException) -> BaseException:
    """The one exception inside (nested) single-member exception groups, else ``exc``."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
