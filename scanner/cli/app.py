"""The ``certscan`` command line.

Exit codes: 0 success, 1 findings at or above ``--fail-on`` (sweep, report), 2 bad usage or input,
3 operational failure (database, network set-up, internal error), 130 interrupted by Ctrl-C.
Every error is one line on stderr; a traceback is shown only with ``CERTSCAN_DEBUG=1``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from typer.main import get_command

from reports import assess
from scanner import __version__
from scanner.cli import db as commands_db
from scanner.cli import export as commands_export
from scanner.cli import hooks as commands_hooks
from scanner.cli import lab as commands_lab
from scanner.cli import options as sa
from scanner.cli import report as commands_report
from scanner.cli import scans as commands_scans
from scanner.cli import serve as commands_serve
from scanner.cli import zones as commands_zones
from scanner.cli.console import inventory_table, safe, stdout_console
from scanner.cli.report import CaBundleOption, ConfigOption, open_existing
from scanner.errors import CertscanError, UsageError
from scanner.inventory.store import db_url
from scanner.plan.shards import shard_spec
from scanner.serialize import json_line, record_dict
from scanner.sweep.run import EXIT_INTERRUPTED, run_command

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

#: ``--workers`` above this is a mistake, not a bigger machine.
MAX_WORKERS = 256
DB_HELP = (
    "Inventory: a SQLite file path or an SQLAlchemy URL (postgresql+psycopg://user@host/db). "
    "Default: $XDG_DATA_HOME/certscan/inventory.db."
)

DbOption = Annotated[
    str | None,
    typer.Option("--db", metavar="PATH|URL", envvar="CERTSCAN_DB", help=DB_HELP, show_envvar=True),
]


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


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


def _db_label(url: str) -> str:
    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite:///")
    return url.split("@")[-1] if "@" in url else url


@app.command()
def sweep(
    ctx: typer.Context,
    # The options that describe the sweep (scanner.cli.options): read through ctx.params.
    target: sa.TargetArgument = None,
    file: sa.FileOption = None,
    ports: sa.PortsOption = None,
    starttls: sa.StarttlsOption = "auto",
    exclude: sa.ExcludeOption = None,
    exclude_file: sa.ExcludeFileOption = None,
    blocklist: sa.BlocklistOption = None,
    sni: sa.SniOption = None,
    sni_from: sa.SniFromOption = None,
    sni_file: sa.SniFileOption = None,
    all_certs: sa.AllCertsOption = False,
    resolve: sa.ResolveOption = "all",
    allow_public: sa.AllowPublicOption = False,
    max_targets: sa.MaxTargetsOption = 2**24,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print the target count and the first targets; send nothing."
        ),
    ] = False,
    concurrency: sa.ConcurrencyOption = 4096,
    rate: sa.RateOption = None,
    discover: sa.DiscoverOption = "auto",
    syn_retries: sa.SynRetriesOption = 1,
    syn_wait: sa.SynWaitOption = 1.0,
    handshakes: sa.HandshakesOption = 256,
    probe_protocols: sa.ProbeProtocolsOption = False,
    per_address: sa.PerAddressOption = 2,
    connect_timeout: sa.ConnectTimeoutOption = 3.0,
    handshake_timeout: sa.HandshakeTimeoutOption = 5.0,
    deadline: sa.DeadlineOption = 10.0,
    db: DbOption = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue the last interrupted sweep with the same options."),
    ] = False,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="One JSON object per endpoint that accepted a connection."),
    ] = False,
    json_all: Annotated[
        bool, typer.Option("--json-all", help="Like --json, for every target.")
    ] = False,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="No progress bar or progress lines.")
    ] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No summary table.")] = False,
    report: Annotated[
        str | None,
        typer.Option(
            "--report",
            metavar="FILE",
            help="After the sweep, write a report of what it observed (format from the "
            "extension: .html, .csv, .json).",
        ),
    ] = None,
    fail_on: Annotated[
        str | None,
        typer.Option(
            "--fail-on",
            metavar=commands_report.SEVERITY_NAMES,
            help="Exit 1 when an endpoint this sweep observed has a finding at or above this "
            "severity.",
        ),
    ] = None,
    config: ConfigOption = None,
    ca_bundle: CaBundleOption = None,
    run_hooks: Annotated[
        bool,
        typer.Option(
            "--run-hooks",
            help="After the sweep, run the config's renewal hooks on the open findings "
            "(as `certscan hooks run`).",
        ),
    ] = False,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed", metavar="S", help="Seed of the target permutation that --shards cuts up."
        ),
    ] = None,
    shards: Annotated[
        int | None,
        typer.Option(
            "--shards",
            metavar="N",
            help="Cut the seeded target permutation into N shards (needs --seed and --shard); "
            "the N shards together cover every target exactly once.",
        ),
    ] = None,
    shard: Annotated[
        int | None,
        typer.Option("--shard", metavar="I", help="Sweep only shard I (0 .. N-1)."),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            metavar="N",
            help="Sweep with N processes (N shards of one scan, one inventory) to use N cores.",
        ),
    ] = 1,
) -> int:
    """Sweep targets for TLS endpoints, store every presented certificate chain, record findings."""
    url = db_url(db)
    base = sa.sweep_options(ctx.params, db_url=url, db_label=_db_label(url))
    if workers < 1 or workers > MAX_WORKERS:
        raise UsageError(f"--workers must be between 1 and {MAX_WORKERS} (got {workers})")
    if workers > 1 and (shards is not None or shard is not None):
        raise UsageError("--workers shards the sweep itself: drop --shards/--shard")
    shard_choice = shard_spec(seed, shards, shard) if workers == 1 else shard_spec(seed, None, None)
    if workers > 1:
        shard_choice = None  # the workers' shards are cut from the same seed
    if report == "-" and (json_out or json_all):
        raise UsageError("--report - and --json both write to standard output: pick one")
    output = (
        None if report is None else commands_report.report_output(report, None, option="--report")
    )
    threshold = None if fail_on is None else assess.parse_severity(fail_on, option="--fail-on")
    criteria = assess.load_criteria(config, ca_bundle or (), env=os.environ)
    options = dataclasses.replace(
        base,
        resume=resume,
        json_mode="all" if json_all else "open" if json_out else "off",
        progress=not no_progress,
        summary=not quiet,
        dry_run=dry_run,
        criteria=criteria,
        report=output,
        fail_on=threshold,
        hooks=commands_hooks.load_hooks(config) if run_hooks else None,
        shard=shard_choice,
        workers=workers,
        seed=seed or 0,
    )
    return run_command(options, out=sys.stdout, err=_err()).exit_code


@app.command()
def inventory(
    db: DbOption = None,
    scan: Annotated[
        int | None,
        typer.Option("--scan", metavar="ID", help="Show the observations of this scan only."),
    ] = None,
    all_targets: Annotated[
        bool, typer.Option("--all", help="Include endpoints that yielded no certificate.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per endpoint.")] = False,
) -> int:
    """List endpoints and their certificates from the inventory, soonest expiry first."""
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
    out.print(f"{len(records)} endpoints in {safe(_db_label(url), 200)}", markup=False)
    return 0


app.command("findings")(commands_report.findings)
app.command("report")(commands_report.report)
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


def _one_line(exc: BaseException) -> str:
    return safe(str(exc) or type(exc).__name__, 500)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns (and, as a script, exits with) the exit code."""
    command = get_command(app)
    err = _err()
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
        err.print(f"certscan: error: {safe(message, 300)} (see '{where} --help')", markup=False)
        return 2
    except (Exception, KeyboardInterrupt, BaseExceptionGroup) as raised:
        # A user error raised inside a trio nursery arrives wrapped in an exception group.
        found = _sole(raised)
        if isinstance(found, CertscanError):
            err.print(f"certscan: error: {_one_line(found)}", markup=False)
            return found.exit_code
        if isinstance(found, KeyboardInterrupt):
            err.print("certscan: interrupted", markup=False)
            return EXIT_INTERRUPTED
        if os.environ.get("CERTSCAN_DEBUG"):
            raise
        err.print(
            f"certscan: internal error: {type(found).__name__}: {_one_line(found)} "
            "(set CERTSCAN_DEBUG=1 for a traceback)",
            markup=False,
        )
        return 3
    return int(result) if isinstance(result, int) else 0


def _sole(exc: BaseException) -> BaseException:
    """The one exception inside (nested) single-member exception groups, else ``exc``."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
