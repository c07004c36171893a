"""``certscan sweep``: the options of a sweep turned into :class:`SweepOptions`, then the sweep
use case (:func:`scanner.sweep.run.run_command`) with its events printed on the terminal."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from scanner.cli import options as sa
from scanner.errors import UsageError
from scanner.plan.shards import shard_spec

if TYPE_CHECKING:
    from scanner.sweep.options import AfterSweep

# Everything a sweep needs beyond its options (the engine, the inventory, the findings engine,
# the renderers, the hooks) is imported when the command runs: `sweep --help` loads none of it.

__all__ = ["MAX_WORKERS", "db_label", "sweep"]

#: ``--workers`` above this is a mistake, not a bigger machine.
MAX_WORKERS = 256


def _hooks_after(config: Path | None) -> AfterSweep:
    """``--run-hooks``: the config's hooks as the sweep's after-step (checked before sweeping)."""
    from exporters.hooks.runner import after_sweep
    from scanner.cli.hooks import load_hooks

    return after_sweep(load_hooks(config))


def db_label(url: str) -> str:
    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite:///")
    return url.split("@")[-1] if "@" in url else url


def sweep(
    ctx: typer.Context,
    # The options that describe the sweep (scanner.cli.options): read through ctx.params.
    target: sa.TargetArgument = None,
    file: sa.FileOption = None,
    targets_csv: sa.CsvOption = None,
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
    db: sa.DbOption = None,
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
            metavar=sa.SEVERITY_NAMES,
            help="Exit 1 when an endpoint this sweep observed has a finding at or above this "
            "severity.",
        ),
    ] = None,
    config: sa.ConfigOption = None,
    ca_bundle: sa.CaBundleOption = None,
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
    from rich.console import Console

    from reports import criteria as judged
    from scanner.cli.console import ConsoleEvents
    from scanner.inventory.location import db_url
    from scanner.sweep.run import run_command

    url = db_url(db)
    base = sa.sweep_options(ctx.params, db_url=url, db_label=db_label(url))
    if workers < 1 or workers > MAX_WORKERS:
        raise UsageError(f"--workers must be between 1 and {MAX_WORKERS} (got {workers})")
    if workers > 1 and (shards is not None or shard is not None):
        raise UsageError("--workers shards the sweep itself: drop --shards/--shard")
    shard_choice = shard_spec(seed, shards, shard) if workers == 1 else shard_spec(seed, None, None)
    if workers > 1:
        shard_choice = None  # the workers' shards are cut from the same seed
    if report == "-" and (json_out or json_all):
        raise UsageError("--report - and --json both write to standard output: pick one")
    output = None
    if report is not None:
        from reports.destination import report_output  # checks the format: loads the renderers

        output = report_output(report, None, option="--report")
    threshold = None if fail_on is None else judged.parse_severity(fail_on, option="--fail-on")
    # A dry run sends nothing and judges nothing: it does not load the trust store either.
    criteria = None if dry_run else judged.load_criteria(config, ca_bundle or (), env=os.environ)
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
        after=_hooks_after(config) if run_hooks else None,
        shard=shard_choice,
        workers=workers,
        seed=seed or 0,
    )
    return run_command(
        options,
        out=sys.stdout,
        events=ConsoleEvents(Console(stderr=True, highlight=False, soft_wrap=True)),
    ).exit_code
