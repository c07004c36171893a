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
from typing import Annotated

import trio
import typer
from rich.console import Console
from typer.main import get_command

from reports import assess
from scanner import (
    __version__,
    commands_db,
    commands_export,
    commands_hooks,
    commands_lab,
    commands_report,
    commands_scans,
    commands_serve,
    commands_zones,
    discovery,
    targets,
)
from scanner.commands_report import CaBundleOption, ConfigOption, open_existing
from scanner.console import inventory_table, safe, stdout_console
from scanner.errors import CertscanError, UsageError
from scanner.models import PROTOCOLS, EngineLimits
from scanner.serialize import json_line, record_dict
from scanner.shards import shard_spec
from scanner.starttls import STARTTLS_PORTS
from scanner.store import db_url
from scanner.sweep_command import (
    EXIT_INTERRUPTED,
    SweepOptions,
    join_specs,
    read_list_file,
    run,
    starttls_default,
)

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
PORTS_HELP = (
    "Ports: list and ranges, each with an optional /PROTOCOL (tls, or a STARTTLS protocol: "
    + ", ".join(p for p in PROTOCOLS if p != "tls")
    + "), e.g. 443,8443,9000-9010,2525/smtp,10443/tls. Default: "
    + ",".join(str(p) for p in targets.DEFAULT_PORTS)
    + ": implicit TLS on 443 HTTPS, 465 SMTPS, 636 LDAPS, 993 IMAPS, 995 POP3S, 8443 HTTPS-alt;"
    " STARTTLS on 25 and 587 SMTP, 110 POP3, 143 IMAP, 389 LDAP, 3389 RDP, 5432 PostgreSQL."
)
STARTTLS_HELP = (
    "How TLS starts on ports given without /PROTOCOL. 'auto': STARTTLS on the well-known ports ("
    + ", ".join(f"{port} {name}" for port, name in STARTTLS_PORTS.items())
    + "), implicit TLS elsewhere, retried once as STARTTLS when the server greets in plaintext "
    "(220, * OK, +OK, MySQL); 'off': implicit TLS everywhere; or one protocol for every port."
)
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


def _positive(name: str, value: float) -> float:
    if value <= 0:
        raise UsageError(f"{name} must be greater than 0 (got {value:g})")
    return value


@app.command()
def sweep(
    target: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="TARGET",
            help="Addresses, CIDRs (10.0.0.0/16), ranges (10.0.0.1-50), hostnames, host:port.",
            show_default=False,
        ),
    ] = None,
    file: Annotated[
        list[Path] | None,
        typer.Option(
            "-f",
            "--file",
            metavar="FILE",
            help="Read targets from FILE (one or more a line, # comments).",
        ),
    ] = None,
    ports: Annotated[
        str | None, typer.Option("-p", "--ports", metavar="PORTS", help=PORTS_HELP)
    ] = None,
    starttls: Annotated[
        str,
        typer.Option("--starttls", metavar="auto|off|PROTOCOL", help=STARTTLS_HELP),
    ] = "auto",
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", metavar="CIDR", help="Address, CIDR or range to skip."),
    ] = None,
    exclude_file: Annotated[
        list[Path] | None,
        typer.Option("--exclude-file", metavar="FILE", help="File of exclusions."),
    ] = None,
    blocklist: Annotated[
        Path | None,
        typer.Option(
            "--blocklist", metavar="FILE", help="File of CIDRs never to scan (# comments)."
        ),
    ] = None,
    sni: Annotated[
        str | None,
        typer.Option("--sni", metavar="NAME", help="Server name to send to every IP target."),
    ] = None,
    sni_from: Annotated[
        list[str] | None,
        typer.Option(
            "--sni-from",
            metavar="san|ptr",
            help="After a handshake, try again with each DNS name in the leaf's SANs (san, at "
            "most 16, no wildcards) or the address's reverse-DNS name (ptr); each name is its "
            "own endpoint. Repeatable.",
        ),
    ] = None,
    sni_file: Annotated[
        Path | None,
        typer.Option(
            "--sni-file",
            metavar="FILE",
            help="After a handshake, try again with every name in FILE (one or more a line).",
        ),
    ] = None,
    all_certs: Annotated[
        bool,
        typer.Option(
            "--all-certs",
            help="After a handshake, also offer only RSA, then only ECDSA, to collect every "
            "certificate of a dual-certificate server (up to 2 more connections).",
        ),
    ] = False,
    resolve: Annotated[
        str,
        typer.Option(
            "--resolve",
            metavar="all|first",
            help="Hostnames: scan 'all' their addresses or the 'first'.",
        ),
    ] = "all",
    allow_public: Annotated[
        bool,
        typer.Option(
            "--allow-public", help="Allow globally routable addresses (off: private only)."
        ),
    ] = False,
    max_targets: Annotated[
        int, typer.Option("--max-targets", metavar="N", help="Refuse plans larger than this.")
    ] = 2**24,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print the target count and the first targets; send nothing."
        ),
    ] = False,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            metavar="N",
            help="Connections in flight at once (clamped to the open-files limit).",
        ),
    ] = 4096,
    rate: Annotated[
        float | None,
        typer.Option(
            "--rate", metavar="PER_SECOND", help="New connections per second (default: no cap)."
        ),
    ] = None,
    handshakes: Annotated[
        int,
        typer.Option("--handshakes", metavar="N", help="TLS handshakes in flight at once."),
    ] = 256,
    probe_protocols: Annotated[
        bool,
        typer.Option(
            "--probe-protocols",
            help="Also try TLS 1.1 and 1.0 on each TLS endpoint (2 more connections).",
        ),
    ] = False,
    per_address: Annotated[
        int, typer.Option("--per-address", metavar="N", help="Connections to one address at once.")
    ] = 2,
    connect_timeout: Annotated[
        float,
        typer.Option(
            "--connect-timeout", metavar="SECONDS", help="Seconds to wait for TCP connect."
        ),
    ] = 3.0,
    handshake_timeout: Annotated[
        float,
        typer.Option(
            "--handshake-timeout", metavar="SECONDS", help="Seconds to wait for the TLS handshake."
        ),
    ] = 5.0,
    deadline: Annotated[
        float,
        typer.Option("--deadline", metavar="SECONDS", help="Seconds one target may take in all."),
    ] = 10.0,
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
    specs = list(target or [])
    for path in file or []:
        specs += read_list_file(path)
    excludes = list(exclude or [])
    for path in exclude_file or []:
        excludes += read_list_file(path)
    if not specs:
        raise UsageError("no targets: give addresses, CIDRs or hostnames, or -f FILE")
    if resolve not in ("all", "first"):
        raise UsageError(f"--resolve must be 'all' or 'first' (got {safe(resolve)!r})")
    starttls_default(starttls)  # a bad --starttls is a usage error before any work
    if min(concurrency, per_address, handshakes) < 1:
        raise UsageError("--concurrency, --handshakes and --per-address must be at least 1")
    limits = EngineLimits(
        concurrency=concurrency,
        handshakes=handshakes,
        probe_protocols=probe_protocols,
        all_certs=all_certs,
        rate=_positive("--rate", rate) if rate is not None else None,
        per_address=per_address,
        connect_timeout=_positive("--connect-timeout", connect_timeout),
        handshake_timeout=_positive("--handshake-timeout", handshake_timeout),
        target_deadline=_positive("--deadline", deadline),
    )
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
    url = db_url(db)
    port_specs = (
        targets.parse_port_specs(ports)
        if ports is not None
        else tuple((port, None) for port in targets.DEFAULT_PORTS)
    )
    options = SweepOptions(
        specs=join_specs(specs),
        ports=tuple(port for port, _ in port_specs),
        protocols=tuple((port, name) for port, name in port_specs if name is not None),
        starttls=starttls,
        excludes=tuple(excludes),
        blocklist=tuple(read_list_file(blocklist)) if blocklist else (),
        sni=sni,
        discovery=discovery.parse_options(
            sni_from or [], read_list_file(sni_file) if sni_file else []
        ),
        allow_public=allow_public,
        max_targets=max_targets,
        resolve_mode=resolve,
        limits=limits,
        db_url=url,
        db_label=_db_label(url),
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
    result = trio.run(lambda: run(options, out=sys.stdout, err=_err()))
    return result.exit_code


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
